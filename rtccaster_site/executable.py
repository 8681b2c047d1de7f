"""The standalone `rtc-caster` executable's entry point (built by scripts/release.py).

    rtc-caster                      prepare the data folder, then serve (like ./run.sh)
    rtc-caster serve --port 9000    the same, with serve's options
    rtc-caster list_devices --json  any other management command, as `manage.py <command>`

Serving, and every command that reads the database, first brings the data folder up to date:
migrations, the default profile and the admin login (whose password is printed once, when it
is created). Listing devices needs no database, so it touches none.
"""
import os
import sys

COMMANDS_WITHOUT_DATABASE = {"list_devices", "help", "--help", "-h", "version", "--version"}


def command_line(argv):
    """The management command line for the executable's arguments: no arguments means serve."""
    return list(argv) if argv else ["serve"]


def needs_database(arguments):
    return arguments[0] not in COMMANDS_WITHOUT_DATABASE


def main(argv=None):
    arguments = command_line(sys.argv[1:] if argv is None else argv)
    # The first start's password must reach a log file or a pipe at once, not when a buffer fills.
    sys.stdout.reconfigure(line_buffering=True)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rtccaster_site.settings")
    import django
    from django.core.management import call_command, execute_from_command_line

    django.setup()
    if needs_database(arguments):
        call_command("migrate", interactive=False, verbosity=0)
        # Serving prints what bootstrap made (the password) with the URLs; other commands keep
        # their standard output for their own answer (`stats --json` is read by scripts).
        call_command("bootstrap", stdout=sys.stdout if arguments[0] == "serve" else sys.stderr)
    execute_from_command_line(["rtc-caster", *arguments])


if __name__ == "__main__":
    main()

"""Create what a fresh install needs: the default profile and an admin login. Safe to run again."""
import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from rtccaster_site.paths import command_line
from streams.models import StreamProfile

ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = "Create the default stream profile and the admin user if they do not exist."

    def handle(self, *args, **options):
        self.ensure_default_profile()
        self.ensure_admin_user()

    def ensure_default_profile(self):
        if StreamProfile.objects.exists():
            return
        profile = StreamProfile(name="Test tone", slug="default", description="A 440 Hz test tone.")
        profile.full_clean()
        profile.save()
        self.stdout.write("Created the default stream profile: a 440 Hz stereo test tone at /listen/default/")

    def ensure_admin_user(self):
        User = get_user_model()
        if User.objects.filter(username=ADMIN_USERNAME).exists():
            self.stdout.write(
                f"Admin user '{ADMIN_USERNAME}' exists (its password was shown when it was created; "
                f"reset it with: {command_line()} changepassword {ADMIN_USERNAME})"
            )
            return
        password = os.environ.get("RTC_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(ADMIN_USERNAME, "", password)
        shown = "from RTC_ADMIN_PASSWORD" if os.environ.get("RTC_ADMIN_PASSWORD") else password
        self.stdout.write(self.style.SUCCESS(f"Created admin login: user '{ADMIN_USERNAME}', password {shown}"))

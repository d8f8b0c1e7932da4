"""The test provider's manage.py: run from anywhere, it finds webvirt's repository (for `tests.oidc.provider`)."""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.oidc.provider.settings"
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)

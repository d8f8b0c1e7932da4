"""The test provider's clients and people, shared by its set-up command and the tests (no Django imports here:
the tests' own process runs webvirt, not the provider)."""

CLIENT = "webvirt"
EXPIRED_CLIENT = "webvirt-expired"  # its ID tokens expired an hour before they were issued (validators.py)
TAMPERED_CLIENT = "webvirt-tampered"  # its ID tokens' signatures have a flipped byte (views.TokenView)
CLIENT_SECRET = "webvirt-client-secret-1"
PEOPLE = [  # user name, first name, last name, groups; the password is "<user name>-password"
    ("student1", "Sam", "Student", ["class-2026"]),
    ("teacher1", "Tess", "Teacher", ["staff", "teachers"]),
]

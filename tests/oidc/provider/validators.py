from __future__ import annotations

import time
from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator

from tests.oidc.provider.people import EXPIRED_CLIENT


class Validator(OAuth2Validator):
    """The user's name, e-mail, user name and groups as claims, in the ID token and the user information."""

    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "groups": "openid"}

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        user = request.user
        return {"preferred_username": user.username, "email": user.email, "given_name": user.first_name,
                "family_name": user.last_name, "name": user.get_full_name(),
                "groups": sorted(group.name for group in user.groups.all())}

    def get_id_token_dictionary(self, token: Any, token_handler: Any, request: Any) -> tuple[dict[str, Any], Any]:
        claims, expiration = super().get_id_token_dictionary(token, token_handler, request)
        if request.client.client_id == EXPIRED_CLIENT:
            claims["exp"] = int(time.time()) - 3600
        return claims, expiration

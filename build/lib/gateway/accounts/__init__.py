"""Users, access tokens, API keys, the credential cache, logins, purchases and refunds, audit, mail."""

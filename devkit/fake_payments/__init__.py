"""Fake payment providers on loopback, for the dev run and the tests: each plays its provider's
side of the wire as the provider documents it, signatures included.

- `stripe`: a Stripe API that creates and retrieves Checkout Sessions, a checkout page that pays a
  session, and webhooks signed with the official `stripe` library's own signer.
- `cryptocloud`: CryptoCloud's API v2 invoice create and info, a pay page, and postbacks whose
  `token` is an HS256 JWT signed with the project secret.
- `robokassa`: Robokassa has no API: a payment page that checks the link's signature (Password #1)
  and plays the ResultURL callback signed with Password #2.

Each pay page takes controls in its query: `deliver=0` pays without sending the callback (a lost
webhook, for the re-check task); see each module for the rest. `POST /_fake/pay-latest` pays the
newest open payment, for a dev-run command line that needs no id.
"""

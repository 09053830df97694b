"""The JSON API's handlers: auth, credits, tokens, bundles, referrals, keys, prices, admin."""

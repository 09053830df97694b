"""The desktop path: a proxied HTTP target behind access tokens bound to one device."""

"""tollgate: a reverse-proxy metering gateway."""

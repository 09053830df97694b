"""Infrastructure every wing stands on (and that imports no wing): config, errors and outcomes,
failures, the call, app keys, clock, metrics, middleware, bodies, migrations, health, connections."""

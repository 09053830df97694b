"""Infrastructure every wing stands on: config, errors and outcomes, the call, app keys, clock, metrics, middleware, bodies, migrations, health, connections."""

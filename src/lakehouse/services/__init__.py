"""HTTP services: one router module per service, the app factory and the gateway."""

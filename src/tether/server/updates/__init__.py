"""Software updates: packages and their signing keys, deployments and rules, device checks."""

"""The serving-node side: evidence collectors and the agent that runs RCAR against a server."""

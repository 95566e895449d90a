"""latfarm.proto: the agent protocol (``v1/agent.proto``), the only contract between agents and server."""

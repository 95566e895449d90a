"""latfarm.common: dependency-free basics every part imports (the agent, the predictor, the server and the
client): ``ranges``, the one wording of a number out of its bounds; ``words``, counts in messages; ``pickles``, the one
plain-data reader of dataset pickles."""

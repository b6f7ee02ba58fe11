"""The team-mode fault suite's parts (tests/test_faults.py runs them): the processes of a team
deployment, the load that edits files and rows and asks questions, and the final audit."""

"""What the tests share: scenarios and connections, targets, waiting, the command line, flow
runs, the Prefect server and the deployments under test. One home for each helper."""

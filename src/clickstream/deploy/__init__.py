"""prefect.yaml: the store deployments rendered from stores/ and checked against them."""

"""The Dynatrace side: environment URLs, the Environment API client, connections and webhooks."""

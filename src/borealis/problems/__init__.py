"""Problems: one record per Dynatrace problem, its notifications and the alerts API."""

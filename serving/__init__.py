"""The BentoML service: the request guard, the routes and pages, scoring, keys and roles, the
audit chain, CDS Hooks, and the FHIR RiskAssessment."""

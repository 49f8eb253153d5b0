"""The REST API's views, by resource: thin interfaces over the selectors and services. Every answer
that is not a success has the one error shape of ``campaigns.api.errors``."""

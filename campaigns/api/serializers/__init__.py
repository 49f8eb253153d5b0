"""The API's serializers, by what they describe: thin shapes over the models. Validation that the models
already know (template and rule checks) goes through the models' ``clean()``; writes with logic go
through ``campaigns.services`` and ``delivery.services`` from the views."""

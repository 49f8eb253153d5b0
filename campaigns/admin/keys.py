"""API keys, for superusers: shown once, stored hashed, revocable."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers, patch_cache_control

from ..api.auth import api_key_create, api_key_revoke
from ..models import ApiKey, ApiRequest


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[ApiKey.Scope.READ],
        help_text="A key without “Launch, schedule…” can prepare campaigns but not send them.",
    )

    class Meta:
        model = ApiKey
        fields = ("name", "scopes", "expires_at")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys for the HR system. The secret is shown once, when the key is made; only its hash is kept."""

    form = ApiKeyForm
    list_display = ("name", "prefix", "scope_list", "created_at", "last_used_at", "expires_at", "active")
    search_fields = ("name", "prefix")
    exclude = ("key_hash",)
    actions = ("revoke",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "scopes", "expires_at")
        return ("name", "prefix", "scope_list", "created_at", "last_used_at", "expires_at", "revoked_at")

    @admin.display(description="Scopes")
    def scope_list(self, api_key: ApiKey) -> str:
        return ", ".join(api_key.scopes) or "—"

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.get_fields(request, obj)

    @admin.display(description="Active", boolean=True, ordering="revoked_at")
    def active(self, api_key: ApiKey) -> bool:
        return api_key.is_active

    def save_model(self, request, obj, form, change):
        if change:
            return  # nothing of a key changes; it is revoked with the action
        api_key, secret = api_key_create(
            name=obj.name, scopes=form.cleaned_data["scopes"], expires_at=form.cleaned_data.get("expires_at")
        )
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(api_key, field.attname))
        obj._state.adding = False
        request._crier_api_key_secret = secret  # for response_add, and only for this request

    def response_add(self, request, obj, post_url_continue=None):
        """The secret is shown once, in this answer itself: never in a message (Django keeps those in a
        signed, readable cookie), the session or a page a cache may keep."""
        secret = getattr(request, "_crier_api_key_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        response = TemplateResponse(
            request,
            "admin/campaigns/apikey/created.html",
            {**self.admin_site.each_context(request), "opts": self.opts, "api_key": obj, "secret": secret},
        )
        add_never_cache_headers(response)
        patch_cache_control(response, no_store=True, private=True)
        return response

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        keys = list(queryset.filter(revoked_at__isnull=True))
        for api_key in keys:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"{len(keys)} key(s) revoked: they no longer authenticate.", messages.SUCCESS)


@admin.register(ApiRequest)
class ApiRequestAdmin(admin.ModelAdmin):
    """The audit trail of the API: who called what, and what they were answered."""

    list_display = ("created_at", "api_key", "method", "path", "status_code", "idempotency_key")
    list_filter = ("api_key", "method", "status_code")
    search_fields = ("path", "idempotency_key")
    list_select_related = ("api_key",)
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

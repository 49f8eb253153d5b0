from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from delivery.views import click_redirect
from bots.views import messages_endpoint
from campaigns.admin.profile import profile_urls
from campaigns.admin.sign_in import sign_in_urls
from campaigns.teams_tab import tab_urls

admin.site.site_header = "Crier"
admin.site.site_title = "Crier"
admin.site.index_title = "Teams announcements"
admin.site.site_url = None  # no public site: no “View site” link to a page that does not exist

handler404 = "campaigns.api.errors.not_found"
handler500 = "campaigns.api.errors.server_error"

urlpatterns = [
    path("admin/", include(profile_urls())),
    path("admin/", include(sign_in_urls())),
    path("admin/", admin.site.urls),
    path("api/messages", messages_endpoint, name="bot-messages"),
    path("c/<str:token>", click_redirect, name="click"),  # a counted link button (delivery.clicks)
    path("api/v1/", include("campaigns.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file of its own, so the page needs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("", include(tab_urls())),  # the personal tab in Teams
    path("", include("bots.health_urls")),  # /livez, /readyz, /healthz
]

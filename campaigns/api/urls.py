"""The REST API, mounted at /api/v1/ by settings.urls."""

from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
# Before "recipients", whose detail route would otherwise take "syncs" for an id.
router.register("recipients/syncs", views.RecipientSyncViewSet, basename="recipient-sync")
router.register("recipients", views.RecipientViewSet, basename="recipient")
router.register("templates", views.MessageTemplateViewSet, basename="template")
router.register("categories", views.CategoryViewSet, basename="category")
router.register("audiences", views.AudienceViewSet, basename="audience")
router.register("campaigns", views.CampaignViewSet, basename="campaign")
router.register(
    r"campaigns/(?P<campaign_id>[0-9]+)/deliveries", views.CampaignDeliveryViewSet, basename="campaign-delivery"
)
router.register("opt-outs", views.OptOutViewSet, basename="opt-out")
router.register("messages", views.DirectMessageViewSet, basename="message")

urlpatterns = router.urls

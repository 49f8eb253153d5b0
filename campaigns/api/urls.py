"""The REST API, mounted at /api/v1/ by settings.urls."""

from rest_framework.routers import DefaultRouter

from .views import campaigns, content, opt_outs, recipients

router = DefaultRouter()
# Before "recipients", whose detail route would otherwise take "syncs" for an id.
router.register("recipients/syncs", recipients.RecipientSyncViewSet, basename="recipient-sync")
router.register("recipients", recipients.RecipientViewSet, basename="recipient")
router.register("templates", content.MessageTemplateViewSet, basename="template")
router.register("categories", content.CategoryViewSet, basename="category")
router.register("audiences", content.AudienceViewSet, basename="audience")
router.register("campaigns", campaigns.CampaignViewSet, basename="campaign")
router.register(
    r"campaigns/(?P<campaign_id>[0-9]+)/deliveries", campaigns.CampaignDeliveryViewSet, basename="campaign-delivery"
)
router.register("opt-outs", opt_outs.OptOutViewSet, basename="opt-out")
router.register("messages", campaigns.DirectMessageViewSet, basename="message")

urlpatterns = router.urls

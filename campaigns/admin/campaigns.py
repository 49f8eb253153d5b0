"""Campaigns: live counts; the launch, schedule, approve, pause, resume and cancel buttons; “Send at”
in the author's own time zone."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from core.errors import ApplicationError
from delivery import progress
from delivery.approval_requests import approval_request
from delivery.reports import progress_summary
from delivery.staff_tests import staff_test_send

from ..approvals import ApprovalState, approval_state
from ..audit import Actor
from ..models import Campaign
from ..card_actions import campaign_ask, content_asking
from ..rendering import compile_message
from ..members import campaign_listing, listing_text
from ..selectors import audience_recipients
from ..services import campaign_update
from ..states import move_allowed
from .campaign_form import CampaignForm, WaitingForApprovalFilter
from .changes import change_links, change_urls
from .common import SAMPLE_RECIPIENT, _when, pace_text
from .live import live_config, live_urls, name_warning
from .transitions import TRANSITIONS
from .watch import watch_urls

# --- Campaigns -----------------------------------------------------------------------------------

S = Campaign.Status


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    list_display = ("name", "kind", "status", "send_at", "launched_at", "delivery_counts")
    list_filter = (WaitingForApprovalFilter, "status", "kind", "category")
    search_fields = ("name",)
    list_select_related = ("category",)
    actions = ("launch_selected", "schedule_selected", "pause_selected", "resume_selected", "cancel_selected")
    EDITABLE = ("name", "kind", "template", "audience", "category", "install_app", "urgent", "urgent_text",
                "acknowledgement", "poll_question", "poll_options", "poll_multiple", "poll_closes_at", "track_clicks",
                "send_at")
    REMINDERS = ("remind_who", "remind_after", "remind_times", "remind_template")
    FOLLOWS = ("follows", "follow_up_who")
    STATE = ("status", "status_reason", "approval", "counts", "pace", "deliveries")
    DATES = ("launched_at", "materialised_at", "completed_at", "cancelled_at", "created_at", "updated_at")

    def get_fieldsets(self, request, obj=None):
        reminders = ("Reminders", {"fields": self.REMINDERS, "description": (
            "Each reminder is a campaign of its own, sent to the people it reached who have not done this yet, once "
            "it (or the reminder before) has sent to everyone and the time has passed. See docs/engagement.md.")})
        if obj is None:
            return [(None, {"fields": self.EDITABLE}), reminders]
        if obj.follows_id is not None:  # a follow-up is not followed up itself
            return [(None, {"fields": (*self.FOLLOWS, *self.EDITABLE)}), ("Progress", {"fields": self.STATE}),
                    ("Dates", {"fields": self.DATES})]
        return [
            (None, {"fields": self.EDITABLE}), reminders, ("Progress", {"fields": self.STATE}),
            ("Dates", {"fields": self.DATES})
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        editable = ("kind",) if move_allowed(obj, "edit") else (*self.EDITABLE, *self.REMINDERS)  # kind is chosen once
        if obj.follows_id is not None:  # what a follow-up sends, and to whom, is the campaign it follows'
            editable = (*self.EDITABLE, *self.REMINDERS, *self.FOLLOWS)
        return (*editable, *self.STATE, *self.DATES)

    def has_delete_permission(self, request, obj=None):
        # Deliveries are the record of who received what: only a draft (which has none) goes.
        return super().has_delete_permission(request, obj) and (obj is None or obj.status == S.DRAFT)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
            obj.save()
        else:
            actor = Actor(user=request.user)
            # A scheduled campaign's new time is set by scheduling it again, with the schedule's checks.
            moved = obj.status == S.SCHEDULED and "send_at" in form.changed_data
            changes = {name: form.cleaned_data[name] for name in form.changed_data
                       if name in (*self.EDITABLE, *self.REMINDERS) and not (moved and name == "send_at")}
            update = campaign_update(campaign_id=obj.pk, changes=changes, actor=actor)
            obj.refresh_from_db()
            if update.approval_withdrawn:
                self.message_user(request, f"“{obj}” was changed after its approval: it needs approval again.", messages.WARNING)
            if moved and obj.status == S.SCHEDULED:
                obj.send_at = form.cleaned_data["send_at"]
                self._apply(request, obj, "schedule")
            elif moved:  # back to draft by the change: its time waits for the next schedule
                campaign_update(campaign_id=obj.pk, changes={"send_at": form.cleaned_data["send_at"]}, actor=actor)
                obj.refresh_from_db()
        if "name" in form.changed_data and (warning := name_warning(name=obj.name, exclude_id=obj.pk)):
            self.message_user(request, warning, messages.WARNING)
        if obj.status == S.DRAFT and obj.send_at:
            self.message_user(
                request,
                f"“{obj}” is still a draft: choose “Schedule” to send it at {_when(obj.send_at)}.",
                messages.WARNING,
            )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if self.has_change_permission(request, obj) if obj else self.has_add_permission(request):
            if obj is None or move_allowed(obj, "edit"):  # its size and message, live, while it can be changed
                context["campaign_live"] = live_config(obj)
        if obj is not None and obj.pk:
            context["campaign_transitions"] = [
                (transition.label, reverse("admin:campaigns_campaign_transition", args=[obj.pk, name]))
                for name, transition in TRANSITIONS.items()
                if self._offers(request, obj, name)
            ]
            # Said before, not after a confirmation page: what waits for approval and how to ask for it.
            blocked = self._waits_for_approval(request, obj)
            context["campaign_blocked"] = [(TRANSITIONS[name].label, blocked) for name in ("launch", "schedule")
                                           if blocked and self._offers(request, obj, name, blocked_too=True)]
            if blocked and request.user.has_perm("campaigns.launch_campaign"):
                context["request_approval_url"] = reverse("admin:campaigns_campaign_request_approval", args=[obj.pk])
            context["campaign_links"] = [
                *([("Watch", reverse("admin:campaigns_campaign_watch", args=[obj.pk]))] if obj.launched_at else []),
                *change_links(request, obj),
            ]
            context["test_send_url"] = reverse("admin:campaigns_campaign_test_send", args=[obj.pk])
            context["send_at_zone"] = timezone.get_current_timezone_name()
            if not move_allowed(obj, "edit"):
                context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _offers(self, request, campaign: Campaign, name: str, blocked_too: bool = False) -> bool:
        transition = TRANSITIONS[name]
        if not transition.offered(campaign, request.user):
            return False
        if name == "schedule" and not campaign.send_at:
            return False
        if name == "approve":  # also when an approval stopped counting (what it covered changed)
            return self._approval(campaign).missing
        if name in ("launch", "schedule") and not blocked_too:  # refused until approved: not offered
            return not self._approval(campaign).missing
        return True

    def _waits_for_approval(self, request, campaign: Campaign) -> str:
        """Why “Launch now” and “Schedule” are not offered, or ""."""
        if not move_allowed(campaign, "approve") or not self._approval(campaign).missing:
            return ""
        state = self._approval(campaign)
        asked = (f" Approval was requested {_when(campaign.approval_requested_at)}."
                 if campaign.approval_requested_at else " Ask for it with “Request approval”.")
        return (f"Waits for approval: it reaches {state.people} people, more than {state.threshold}, and a person "
                f"with the approver role other than its author must approve it first.{asked}")

    def get_urls(self):
        view = self.admin_site.admin_view(self.transition_view)
        transition = path("<path:object_id>/do/<slug:name>/", view, name="campaigns_campaign_transition")
        test_send = path(
            "<path:object_id>/test-send/", self.admin_site.admin_view(self.test_send_view),
            name="campaigns_campaign_test_send",
        )
        request_approval = path(
            "<path:object_id>/request-approval/", self.admin_site.admin_view(self.request_approval_view),
            name="campaigns_campaign_request_approval",
        )
        return [
            transition, test_send, request_approval, *live_urls(self), *watch_urls(self), *change_urls(self),
            *super().get_urls(),
        ]

    # --- read-only fields

    @staticmethod
    def _counts(campaign: Campaign) -> dict:
        """Progress from the counters kept as deliveries move: one Redis round trip, no count over a
        million-row table, on every refresh of the list or the page."""
        if not hasattr(campaign, "_admin_counts"):
            campaign._admin_counts = progress.read(campaign)
        return campaign._admin_counts

    @admin.display(description="Sent / failed / skipped / total")
    def delivery_counts(self, campaign: Campaign) -> str:
        if campaign.launched_at is None:
            return "—"
        if campaign.kind == Campaign.Kind.WELCOME:  # its audience grows as people arrive: no total to show
            return progress_summary(campaign=campaign, counts=self._counts(campaign))
        return "{sent} / {failed} / {skipped} / {total}".format(**self._counts(campaign))

    @staticmethod
    def _approval(campaign: Campaign) -> ApprovalState:
        """Read once per campaign and page: it counts the audience."""
        if not hasattr(campaign, "_admin_approval"):
            campaign._admin_approval = approval_state(campaign=campaign)
        return campaign._admin_approval

    @admin.display(description="Approval")
    def approval(self, campaign: Campaign) -> str:
        if not move_allowed(campaign, "approve"):
            return f"Approved by {campaign.approved_by or 'an API key'}, {_when(campaign.approved_at)}." if (
                campaign.approved_at) else "—"
        state = self._approval(campaign)
        if campaign.approved_at is not None:
            by = campaign.approved_by or "an API key with the campaigns:approve scope"
            if state.approved or not state.needed:
                return f"Approved by {by}, {_when(campaign.approved_at)}."
            if campaign.approved_people is not None and state.people > campaign.approved_people:
                return (
                    f"Approved by {by}, {_when(campaign.approved_at)}, for {campaign.approved_people} people, but it "
                    f"now reaches {state.people}: it needs approval again."
                )
            return (
                f"Approved by {by}, {_when(campaign.approved_at)}, but its template, audience or category changed "
                "since: it needs approval again."
            )
        if not state.needed:
            return f"Not needed: it reaches {state.people} people (approval starts above {state.threshold})."
        why = (f"it reaches {state.people} people, more than {state.threshold}" if state.people > state.threshold
               else "it is urgent")
        return (
            f"Needed before it is launched or scheduled: {why}. A person with the approver role other than its "
            "author approves it."
        )

    @admin.display(description="Deliveries by state")
    def counts(self, campaign: Campaign) -> str:
        counts = self._counts(campaign)
        shown = [("Sent", "sent"), ("Read (where Teams reports reads)", "read"), ("Failed", "failed"),
                 ("Skipped", "skipped"), ("Still to do", "remaining"),
                 ("Possibly sent twice", "ambiguous"),
                 *([("Crier installed the app for", "installed")] if campaign.install_app or counts["installed"] else []),
                 *([("Urgent notices sent", "notified"), ("Urgent notices refused", "notice_failed")]
                   if campaign.urgent else []),
                 *([("Acknowledged", "acknowledged")] if campaign.acknowledgement else []),
                 *([("Answered the poll", "answered")] if campaign.poll_question else []),
                 *([("Opened a link", "clicked")] if campaign.track_clicks else [])]
        return format_html_join(", ", "{}: {}", ((label, counts[key]) for label, key in shown))

    @admin.display(description="Pace")
    def pace(self, campaign: Campaign) -> str:
        if campaign.status != S.RUNNING:
            return "—"
        return pace_text(
            self._counts(campaign), unit="messages ", nothing_left="Nothing left to send: it completes in a moment."
        )

    @admin.display(description="Who it reached")
    def deliveries(self, campaign: Campaign) -> str:
        url = f"{reverse('admin:delivery_delivery_changelist')}?campaign__id__exact={campaign.pk}"
        link = format_html('<a href="{}">View {} deliveries</a>', url, campaign.total_deliveries)
        listing = campaign_listing(campaign=campaign)  # a group's or team's members, listed at its launch
        return format_html("{}<br>The members of {}: {}", link, listing.source_name or listing.source_id,
                           listing_text(listing)) if listing else link

    # --- state changes: list actions and change-page buttons, both through TRANSITIONS

    def _apply(self, request, campaign: Campaign, name: str) -> bool:
        transition = TRANSITIONS[name]
        try:
            transition.run(campaign, request.user, request.POST)
        except ApplicationError as exc:
            self.message_user(request, f"“{campaign}”: {exc.message}", messages.ERROR)
            return False
        self.message_user(request, f"“{campaign}” {transition.done}.", messages.SUCCESS)
        return True

    @staticmethod
    def _after(campaign: Campaign, name: str, done: bool) -> HttpResponseRedirect:
        """Where a change leaves its author: a launched campaign's Watch page, else its change page."""
        if name == "send_again" and done:  # watch the follow-up it made go out
            campaign = campaign.follow_ups.order_by("-pk").first() or campaign
        page = "watch" if name in ("launch", "send_again") and done else "change"
        return HttpResponseRedirect(reverse(f"admin:campaigns_campaign_{page}", args=[campaign.pk]))

    def _reach(self, campaign: Campaign, name: str) -> str:
        if name not in ("launch", "approve"):
            return ""
        if campaign.kind == Campaign.Kind.WELCOME:
            return f"welcomes each new starter{f' in {campaign.audience}' if campaign.audience else ''}"
        people = self._approval(campaign).people
        mandatory = " (mandatory: reaches people who opted out)" if campaign.category.mandatory else ""
        installs = "; Crier installs the app for those who lack it" if campaign.install_app else ""
        if campaign.urgent:
            installs += f"; URGENT: each person's Teams activity feed pops up “{campaign.urgent_text}”"
        if campaign.poll_question:
            installs += f"; a poll: “{campaign.poll_question}”"
        if campaign.acknowledgement:
            installs += ("; a POLICY: everyone is asked to acknowledge it, and again after each edit"
                         if campaign.acknowledgement == Campaign.Acknowledgement.POLICY
                         else "; each person is asked to acknowledge it")
        waits = (" — not approved yet: it will be refused until a person with the approver role approves it"
                 if name == "launch" and move_allowed(campaign, "approve") and self._approval(campaign).missing else "")
        return (
            f"“{campaign.template}” to {people} people of {campaign.audience or 'everyone active'}, "
            f"category {campaign.category}{mandatory}{installs}{waits}"
        )

    def _confirmation(self, request, campaigns: list[Campaign], name: str, action: str = "") -> TemplateResponse:
        transition = TRANSITIONS[name]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{transition.label}: are you sure?",
            "transition": transition,
            "campaigns": [(campaign, self._reach(campaign, name)) for campaign in campaigns],
            "previews": [self._preview(campaign) for campaign in campaigns] if name == "approve" else [],
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "back_url": reverse("admin:campaigns_campaign_change", args=[campaigns[0].pk])
            if not action
            else reverse("admin:campaigns_campaign_changelist"),
        }
        return TemplateResponse(request, "admin/campaigns/campaign/confirm_transition.html", context)

    @staticmethod
    def _preview(campaign: Campaign) -> dict:
        """What the approver checks: the message as the first of its people receives it, and a few names."""
        people = list(audience_recipients(audience=campaign.audience).order_by("id")[:8])
        person = people[0] if people else SAMPLE_RECIPIENT
        template = campaign.template
        ask = campaign_ask(campaign)
        kind, text, card = content_asking(kind=template.kind, text=template.text or "", card=template.card, ask=ask)
        message = compile_message(kind=kind, text=text, card=card)
        return {
            "campaign": campaign,
            "person": person,
            "sample": people,
            "activity": json.loads(message.render(person)),
            "element_id": f"activity-{campaign.pk}",
            "fingerprint": CampaignAdmin._approval(campaign).fingerprint,
            "people": CampaignAdmin._approval(campaign).people,
        }

    def request_approval_view(self, request, object_id: str):
        """“Request approval”: on the approvers' list, and a message to each of them in Teams."""
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if request.method != "POST" or not request.user.has_perm("campaigns.launch_campaign"):
            raise PermissionDenied
        try:
            asked = approval_request(campaign_id=campaign.pk, user=request.user)
        except ApplicationError as exc:
            self.message_user(request, f"“{campaign}”: {exc.message}", messages.ERROR)
        else:
            self.message_user(
                request, f"Approval of “{campaign}” requested: {asked.messaged} approver(s) got a message in Teams.",
                messages.SUCCESS,
            )
            if asked.without_teams:
                self.message_user(
                    request, f"{asked.without_teams} approver(s) have not linked who they are in Teams (My profile): "
                    "they find it under Campaigns, “Waiting for approval”.", messages.WARNING,
                )
            if not asked.link:
                self.message_user(
                    request, "PUBLIC_BASE_URL is not set, so the Teams message carries no link to the approval page.",
                    messages.WARNING,
                )
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))

    def test_send_view(self, request, object_id: str):
        """“Send a test to me”: the campaign's message, now, to the staff member's own Teams identity."""
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if request.method != "POST" or not self.has_change_permission(request, campaign):
            raise PermissionDenied
        try:
            test = staff_test_send(user=request.user, template_id=campaign.template_id, category_id=campaign.category_id,
                                   asking_like=campaign)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(
                request, f"Test of “{campaign}” sent to you in Teams ({test.name}); it arrives in a few seconds.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))

    def _run_action(self, request, queryset, name: str, action: str, confirm: bool):
        campaigns = list(queryset.select_related("template", "audience", "category"))
        if confirm and request.POST.get("post") != "yes":
            return self._confirmation(request, campaigns, name, action)
        done = [self._apply(request, campaign, name) for campaign in campaigns]
        if name == "launch" and done == [True]:  # one campaign launched: watch it go out
            return self._after(campaigns[0], name, True)
        return None

    def has_launch_permission(self, request) -> bool:
        return request.user.has_perm("campaigns.launch_campaign")

    def has_control_permission(self, request) -> bool:
        return request.user.has_perm("campaigns.control_campaign")

    @admin.action(description="Launch now…", permissions=["launch"])
    def launch_selected(self, request, queryset):
        return self._run_action(request, queryset, "launch", "launch_selected", confirm=True)

    @admin.action(description="Schedule at their “Send at” time", permissions=["launch"])
    def schedule_selected(self, request, queryset):
        return self._run_action(request, queryset, "schedule", "schedule_selected", confirm=False)

    @admin.action(description="Pause", permissions=["control"])
    def pause_selected(self, request, queryset):
        return self._run_action(request, queryset, "pause", "pause_selected", confirm=False)

    @admin.action(description="Resume", permissions=["launch"])
    def resume_selected(self, request, queryset):
        return self._run_action(request, queryset, "resume", "resume_selected", confirm=False)

    @admin.action(description="Cancel…", permissions=["control"])
    def cancel_selected(self, request, queryset):
        return self._run_action(request, queryset, "cancel", "cancel_selected", confirm=True)

    def transition_view(self, request, object_id: str, name: str):
        """A change-page button: GET asks for confirmation, POST does it."""
        if name not in TRANSITIONS:
            raise Http404
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not request.user.has_perm(TRANSITIONS[name].permission):
            raise PermissionDenied
        if request.method != "POST":
            return self._confirmation(request, [campaign], name)
        return self._after(campaign, name, self._apply(request, campaign, name))



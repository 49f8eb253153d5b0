"""Opt-outs: who asked not to receive which messages."""

from __future__ import annotations

from rest_framework import serializers

from campaigns.models import Category, OptOut, Recipient

from .common import RejectUnknownFieldsMixin


class OptOutSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """A person who asked not to receive a category, or anything (category null)."""

    recipient = serializers.SlugRelatedField(
        slug_field="external_id", queryset=Recipient.objects.all(), help_text="The person's external id."
    )
    category = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Category.objects.all(),
        required=False,
        allow_null=True,
        help_text="A category slug, or null for every non-mandatory category.",
    )

    class Meta:
        model = OptOut
        fields = ["id", "recipient", "category", "source", "note", "created_at"]
        read_only_fields = ["id", "source", "created_at"]
        validators = []  # recording an existing opt-out again is not an error: the view answers 200

    def validate_category(self, category: Category | None) -> Category | None:
        if category is not None and category.mandatory:
            raise serializers.ValidationError(f"{category.slug} is mandatory: nobody can opt out of it.")
        return category

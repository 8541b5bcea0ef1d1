"""The provisioning read the way Grafana 12.2's loaders read it (no Grafana runs here; its source was read instead):
alert rules and dashboards in one folder, every provisioning folder Grafana opens present, dashboards at the
schema version 12.2 writes."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import PROVISIONING, dashboards, provisioning

# The dashboard schema version Grafana 12.2 writes; a dashboard at an older one is migrated at every load.
GRAFANA_SCHEMA_VERSION = 42


class Folders:
    """One org's folders (uid -> title), looked up and created as Grafana 12.2's two provisioners do.

    Titles need not be unique (Grafana 11.3 on), so a lookup that misses creates a second folder of the same title.
    """

    def __init__(self) -> None:
        self.titles: dict[str, str] = {}

    def _create(self, title: str, uid: str = "") -> str:
        uid = uid or f"generated-{len(self.titles)}"  # util.GenerateShortUID() in Grafana
        self.titles[uid] = title
        return uid

    def _by_title(self, title: str) -> str | None:
        return next((uid for uid, known in self.titles.items() if known == title), None)

    def for_alert_rules(self, title: str) -> str:
        """pkg/services/provisioning/alerting/rules_provisioner.go, getOrCreateFolderByTitle: the group's `folder`
        is a title (rule files have no folder uid); looked up by title, else created with a generated uid."""
        return self._by_title(title) or self._create(title)

    def for_dashboards(self, provider: dict[str, Any]) -> str:
        """pkg/services/provisioning/dashboards/file_reader.go, getOrCreateFolder: by `folderUid` when set (the
        title is then not consulted), else by `folder` title; else created with that uid (or a generated one)."""
        uid = provider.get("folderUid", "")
        found = (uid if uid in self.titles else None) if uid else self._by_title(provider["folder"])
        return found or self._create(provider["folder"], uid)


@pytest.mark.parametrize("alerting_first", [True, False], ids=["alerting-first", "dashboards-first"])
def test_alert_rules_and_dashboards_land_in_one_folder(alerting_first: bool) -> None:
    """Grafana 12.2 provisions alerting, then dashboards (pkg/services/provisioning/provisioning.go, starting());
    later versions start them side by side, so either may come first."""
    (provider,) = provisioning("dashboards")["providers"]
    groups = provisioning("alerting")["groups"]
    folders = Folders()
    if alerting_first:
        rule_folders = {folders.for_alert_rules(group["folder"]) for group in groups}
        dashboard_folder = folders.for_dashboards(provider)
    else:
        dashboard_folder = folders.for_dashboards(provider)
        rule_folders = {folders.for_alert_rules(group["folder"]) for group in groups}
    assert len(folders.titles) == 1, f"two folders: {folders.titles}"
    assert rule_folders == {dashboard_folder}


def test_every_provisioning_folder_grafana_opens_is_in_the_repository() -> None:
    """Grafana reads these four at every start and logs an error for a missing one (plugins: "Failed to read plugin
    provisioning files from directory"). Git keeps no empty folder, so each must hold a file."""
    for kind in ("alerting", "dashboards", "datasources", "plugins"):
        folder = PROVISIONING / kind
        assert folder.is_dir() and any(folder.iterdir()), f"grafana/provisioning/{kind}/ is missing or empty"
    # Grafana parses only *.yaml / *.yml there; whatever keeps plugins/ in git must not be one that fails to parse.
    assert provisioning("plugins").get("apps", []) == []


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_dashboards_are_at_the_schema_version_grafana_writes(name: str) -> None:
    board = dashboards()[name]
    assert board["schemaVersion"] == GRAFANA_SCHEMA_VERSION
    # v42's migration hides from tooltips what is hidden from the visualization: nothing of ours for it to change.
    for panel in board["panels"]:
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override.get("properties", []):
                if prop["id"] == "custom.hideFrom" and prop["value"].get("viz"):
                    assert prop["value"].get("tooltip"), f"{panel['title']}: hidden from viz, not from tooltip"


# The keys Grafana 12.2's rule file loader reads (pkg/services/provisioning/alerting/rules_types.go: AlertRuleGroupV1,
# AlertRuleV1, QueryV1); it ignores any other, so a key of another shape (the HTTP API's `folderUID`, `ruleGroup`,
# `title` of a group...) would be silently dropped.
RULE_GROUP_KEYS = {"orgId", "name", "folder", "interval", "rules"}
RULE_KEYS = {
    "uid", "title", "condition", "data", "dasboardUid", "dashboardUid", "panelId", "noDataState", "execErrState",
    "for", "keepFiringFor", "missing_series_evals_to_resolve", "annotations", "labels", "isPaused",
    "notification_settings", "record",
}  # fmt: skip
QUERY_KEYS = {"refId", "queryType", "relativeTimeRange", "datasourceUid", "model"}


def test_alert_rules_are_in_the_file_provisioning_shape() -> None:
    """Every group, rule and query holds only keys the file loader reads, and those it needs: a group's name, its
    folder by title and an interval it parses as a duration; a rule's uid, title, condition and data."""
    groups = provisioning("alerting")["groups"]
    assert groups
    for group in groups:
        assert set(group) <= RULE_GROUP_KEYS, set(group) - RULE_GROUP_KEYS
        assert group["name"] and group["folder"] and group["rules"]
        assert isinstance(group["interval"], str) and group["interval"][-1] in "smhd", group["interval"]
        for rule in group["rules"]:
            assert set(rule) <= RULE_KEYS, (rule["uid"], set(rule) - RULE_KEYS)
            assert rule["uid"] and rule["title"] and rule["condition"] in {query["refId"] for query in rule["data"]}
            for query in rule["data"]:
                assert set(query) <= QUERY_KEYS, (rule["uid"], set(query) - QUERY_KEYS)
                assert set(query["relativeTimeRange"]) == {"from", "to"}

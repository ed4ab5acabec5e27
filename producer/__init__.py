"""The producer: ``python -m producer ...`` and the Python API for campaign schedulers.

Kept thin: everything lives in :mod:`callq.intake` (see its docstring for the API)::

    from producer import enqueue_file, campaign_status
    result = enqueue_file("calls.csv", "reminders-2026-11-23")
    print(campaign_status("reminders-2026-11-23").as_dict())
"""

from callq.intake import (
    CallRequest,
    CampaignOptions,
    EnqueueResult,
    campaign_status,
    cancel_campaign,
    enqueue_calls,
    enqueue_file,
    held_back,
    iter_report,
    pause_campaign,
    resume_campaign,
    set_campaign,
    write_report_file,
)

__all__ = [
    "CallRequest",
    "CampaignOptions",
    "EnqueueResult",
    "campaign_status",
    "cancel_campaign",
    "enqueue_calls",
    "enqueue_file",
    "held_back",
    "iter_report",
    "pause_campaign",
    "resume_campaign",
    "set_campaign",
    "write_report_file",
]

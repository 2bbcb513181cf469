"""The `status.report` activity: hand the release's state to every registered status sink."""

from __future__ import annotations

from temporalio import activity

from activities.contracts import ACT_STATUS_REPORT, StatusReport, StatusReportResult
from activities.status.base import STATUS_SINKS


@activity.defn(name=ACT_STATUS_REPORT)
async def report_status(report: StatusReport) -> StatusReportResult:
    result = StatusReportResult()
    for name, sink in STATUS_SINKS.items():
        try:
            await sink.publish(report)
        except Exception as error:  # one sink's trouble must not keep the others from their report
            activity.logger.warning("status sink %s failed for %s: %s", name, report.workflow_id, error)
            result.failed[name] = str(error) or type(error).__name__
        else:
            result.delivered.append(name)
    return result

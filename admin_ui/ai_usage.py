"""AI usage by model, by API key and by day over a date range (default: the last 7 days), for
everyone or one user, within the actor's scope; with charts of credits by day and by model."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from admin_ui import charts, pages
from gateway.accounts import directory
from gateway.ai import usage_report
from gateway.core.app_keys import DATABASE, REPORTS_DATABASE
from gateway.core.errors import BadRequest
from gateway.core.query_params import query_id

DEFAULT_DAYS = 7
DAYS_MAX = 92
# The table by API key sums every call of the range afresh (keys do not roll up into few rows): it is
# shown for ranges up to this long, or for one user.
KEY_DAYS_MAX = 7


async def span_of(request: web.Request) -> usage_report.Span:
    user_id = query_id(request, "user")
    if user_id is not None:
        await directory.get_user(request.app[DATABASE], pages.scope(request), user_id)
    today = pages.now(request).date()
    end = pages.query_day(request, "to") or today
    try:  # the default start before 0001-01-01, or the end of 9999-12-31, is past what a date holds
        start = pages.query_day(request, "from") or end - dt.timedelta(days=DEFAULT_DAYS - 1)
        if not 0 <= (end - start).days < DAYS_MAX:
            raise BadRequest(f"the range must run forward and span at most {DAYS_MAX} days", code="invalid_query")
        return usage_report.Span(pages.midnight(start), pages.midnight(end + dt.timedelta(days=1)), user_id)
    except OverflowError as error:
        raise BadRequest("the range must lie between 0001-01-01 and 9999-12-30", code="invalid_query") from error


@pages.staff_page()
async def report(request: web.Request) -> web.Response:
    """GET /admin/ai-usage?from&to&user."""
    span = await span_of(request)
    database, scope, today = request.app[REPORTS_DATABASE], pages.scope(request), pages.now(request).date()
    models = await usage_report.by_model(database, scope, span, today, request.app[DATABASE])
    days = await usage_report.by_day(database, scope, span, today, request.app[DATABASE])
    show_keys = span.user_id is not None or (span.end - span.start).days <= KEY_DAYS_MAX
    micro = 1_000_000
    return pages.render(request, "ai_usage.html", {
        "span": span, "last_day": (span.end - dt.timedelta(days=1)).date(), "models": models, "days": days,
        "keys": await usage_report.by_key(database, scope, span) if show_keys else None,
        "key_days_max": KEY_DAYS_MAX,
        "day_chart": charts.columns("AI credits per day", [row["day"].strftime("%m-%d") for row in days],
                                    [("credits", [row["charged_micro"] / micro for row in days])]),
        "model_chart": charts.bars("AI credits by model", [(row["model"], row["charged_micro"] / micro)
                                                           for row in models[:12]])})

"""The dashboard: traffic (admins), open proxy sessions, credits sold and spent today / 7 d / 30 d,
AI tokens and credits by model, and the top users — as charts drawn on the server."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from admin_ui import charts, pages
from admin_ui.traffic import TRAFFIC
from gateway.accounts import statistics
from gateway.ai import usage_report
from gateway.core.app_keys import DATABASE, REPORTS_DATABASE
from gateway.proxy import session_reports

DAYS = 30
AI_DAYS = 7
PERIODS = (("Today", 1), ("7 days", 7), ("30 days", 30))


def _period_sums(days: list[statistics.DayCredits]) -> list[dict]:
    sums = []
    for label, count in PERIODS:
        window = days[-count:]
        sums.append({"label": label, "sold": sum(d.credits.sold_micro for d in window),
                     "spent": sum(d.credits.spent_micro for d in window),
                     "refunded": sum(d.credits.refunded_micro for d in window)})
    return sums


def _traffic(request: web.Request) -> dict | None:
    if pages.staff(request).role != "admin":
        return None  # the gateway's traffic as a whole is not a manager's clients'
    figures = request.app[TRAFFIC].figures()
    points = [(-ago / 60, rate) for ago, rate in figures.rates]
    return {"figures": figures, "chart": charts.line("Requests per second", points, "minutes ago → now")}


@pages.staff_page()
async def dashboard(request: web.Request) -> web.Response:
    """GET /admin/."""
    database, scope, at = request.app[REPORTS_DATABASE], pages.scope(request), pages.now(request)
    days = await statistics.daily_credits(database, scope, at.date(), DAYS, request.app[DATABASE])
    span = usage_report.Span(pages.midnight(at.date() - dt.timedelta(days=AI_DAYS - 1)),
                             pages.midnight(at.date() + dt.timedelta(days=1)))
    models = await usage_report.by_model(database, scope, span, at.date(), request.app[DATABASE])
    top = await statistics.top_spenders(database, scope)
    micro = 1_000_000
    labels = [day.day.strftime("%m-%d") for day in days]
    return pages.render(request, "dashboard.html", {
        "traffic": _traffic(request),
        "open_sessions": await session_reports.open_count(database, scope),
        "periods": _period_sums(days),
        "credits_chart": charts.columns("Credits per day", labels, [
            ("sold", [d.credits.sold_micro / micro for d in days]),
            ("spent", [d.credits.spent_micro / micro for d in days])]),
        "models": models,
        "model_credits_chart": charts.bars("AI credits by model", [
            (row["model"], row["charged_micro"] / micro) for row in models[:10]]),
        "model_tokens_chart": charts.bars("AI tokens by model", [
            (row["model"], row["input_tokens"] + row["output_tokens"]) for row in models[:10]]),
        "top": top,
        "top_chart": charts.bars("Top users by credits spent", [
            (row["email"], row["spent_micro"] / micro) for row in top]),
        "ai_days": AI_DAYS,
    })

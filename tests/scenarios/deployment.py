"""A deployment breaks one service: payment 2.14.0 goes out, payment's failure rate jumps, checkout
(which calls payment) fails with it and the shop's web application shows JavaScript errors. At the
same time search slows down for reasons of its own and a batch host saturates its CPU. Checkout's
RESOLVED overtakes its delayed OPEN, which arrives after the end and must not reopen anything."""

from __future__ import annotations

from tests.scenarios.model import (
    CorrelationScenario,
    Story,
    Topology,
    application,
    at,
    group,
    host,
    process,
    service,
)
from tests.support.rca_scenarios import event, log_records, series

PAYMENT = service("payment")
PAYMENT_PROCESS = process("payment-6b8d")
CHECKOUT = service("checkout")
SHOP_WEB = application("shop web")
SEARCH = service("search")
SEARCH_PROCESS = process("search-0f1e")
APP_NODE = host("k8s-node-02")
SEARCH_NODE = host("k8s-node-05")
BATCH = host("batch-07")


def deployment_breaks_one_service() -> CorrelationScenario:
    topology = Topology()
    topology.runs_in(PAYMENT, PAYMENT_PROCESS, APP_NODE)
    topology.runs_in(SEARCH, SEARCH_PROCESS, SEARCH_NODE)
    topology.calls(CHECKOUT, PAYMENT)
    topology.calls(SHOP_WEB, CHECKOUT)
    topology.add(BATCH)

    story = Story()
    payment = story.problem(
        "P-3301",
        "Failure rate increase",
        0,
        impacted=[PAYMENT],
        root=PAYMENT,
        severity="ERROR",
        event_type="SERVICE_ERROR_RATE_INCREASED",
    )
    checkout = story.problem(
        "P-3302",
        "Failure rate increase",
        1,
        impacted=[CHECKOUT],
        root=PAYMENT,
        severity="ERROR",
        event_type="SERVICE_ERROR_RATE_INCREASED",
    )
    javascript = story.problem(
        "P-3303",
        "JavaScript error rate increase",
        2,
        impacted=[CHECKOUT, SHOP_WEB],
        severity="ERROR",
        impact="APPLICATION",
        event_type="APPLICATION_ERROR_RATE_INCREASED",
    )
    search = story.problem("P-3304", "Response time degradation", 5, impacted=[SEARCH])
    batch = story.problem(
        "P-3305",
        "CPU saturation",
        -2,
        impacted=[BATCH],
        root=BATCH,
        severity="RESOURCE_CONTENTION",
        impact="INFRASTRUCTURE",
        event_type="CPU_SATURATED",
    )
    late_checkout = story.opened(checkout)
    story.wave(
        story.opened(batch),
        story.opened(payment),
        story.opened(javascript),
        story.opened(search),
        story.opened(payment),  # a redelivery
    )
    story.wave(story.resolved(checkout, 9), story.opened(javascript, minute=6))
    story.wave(late_checkout, story.resolved(batch, 10), story.resolved(search, 14))
    story.wave(story.resolved(payment, 16), story.resolved(javascript, 17))
    return story.scenario(
        "deployment_breaks_one_service",
        __doc__ or "",
        [
            group("P-3301", "P-3302", "P-3303", cause=PAYMENT),
            group("P-3304", cause=None),
            group("P-3305", cause=BATCH),
        ],
        entities=topology.documents(),
        events=[
            event(
                "33010_1",
                "CUSTOM_DEPLOYMENT",
                "Deploy payment 2.14.0",
                PAYMENT.id,
                PAYMENT.name,
                at(-4),
                properties={"dt.event.deployment.version": "2.14.0", "dt.event.deployment.name": "payment"},
            ),
            event(
                "33050_1",
                "CPU_SATURATED",
                "CPU saturation",
                BATCH.id,
                BATCH.name,
                at(-2),
                properties={"dt.event.is_rootcause_relevant": "true"},
            ),
        ],
        logs=log_records(
            PAYMENT.id,
            "dt.entity.service",
            at(0),
            ["PaymentGateway: unknown field 'currencyCode' in response (schema v3)"] * 3,
        ),
        metrics={
            "builtin:service.errors.total.rate": {
                PAYMENT.id: series(at(0), 0.2, 37.0),
                CHECKOUT.id: series(at(1), 0.4, 22.0),
            },
            "builtin:host.cpu.usage": {BATCH.id: series(at(-2), 28.0, 98.0)},
        },
    )

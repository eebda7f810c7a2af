"""A customer made through the platform's GraphQL API for a website test: a tenant with a
viewer who signs in, and, when asked, a license and an enrolled installation whose token
an "agent" (a GraphQL client) reports with."""

from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import Browser, Page

from tests.processes import Client
from tests.web.browsing import PLATFORM_EMAIL, PLATFORM_PASSWORD, WebStack, open_page, sign_in


@dataclass(frozen=True)
class Customer:
    ops: Client  # the platform operator, signed in
    tenant_id: str
    email: str
    password: str
    agent: Client | None  # None: no installation enrolled

    def signed_in(self, browser: Browser, stack: WebStack) -> Page:
        """A page of its own where the viewer has signed in."""
        page = open_page(browser, stack.url)
        sign_in(page, self.email, self.password)
        return page


def new_customer(
    stack: WebStack, name: str, slug: str, *, agent_version: str | None = "0.2.0"
) -> Customer:
    """Tenant `name`, viewer it@`slug`.example ("`slug` passwort 1"), and unless
    agent_version is None a license and the installation swyx.`slug`.local."""
    ops = Client(stack.url).login(PLATFORM_EMAIL, PLATFORM_PASSWORD)
    tenant_id = ops("mutation($n: String!) { createTenant(input: {name: $n}) { id } }", n=name)[
        "createTenant"
    ]["id"]
    key = None
    if agent_version is not None:
        key = ops(
            "mutation($t: ID!, $v: DateTime!) { issueLicense(tenantId: $t, seats: 5, "
            "validUntil: $v) { key } }",
            t=tenant_id,
            v="2099-01-01T00:00:00+00:00",
        )["issueLicense"]["key"]
    email, password = f"it@{slug}.example", f"{slug} passwort 1"
    ops(
        "mutation($t: ID!, $e: String!, $p: String!) { createUser(input: {tenantId: $t, "
        'email: $e, name: "IT", role: TENANT_VIEWER, password: $p}) { id } }',
        t=tenant_id,
        e=email,
        p=password,
    )
    agent = None
    if key is not None:
        enrolled = Client(stack.url)(
            "mutation($k: String!, $h: String!, $v: String!) { registerInstallation("
            "licenseKey: $k, hostname: $h, agentVersion: $v) { token } }",
            k=key,
            h=f"swyx.{slug}.local",
            v=agent_version,
        )["registerInstallation"]
        agent = Client(stack.url, enrolled["token"])
    return Customer(ops, tenant_id, email, password, agent)

# home: filled by the pages of this area. Keys are the same in every language.
home-welcome = Welcome, { $name }
home-department = Department
home-roles = Roles

home-col-record = Record
home-col-kind = Kind
home-col-purpose = Purpose
home-col-requester = Requester
home-col-waiting = Waiting for
home-col-borrower = Borrower
home-col-approved-by = Approved by
home-col-latest-due = Return by at the latest
home-col-due = Due
home-col-status = Status
home-col-state = State
home-col-asked = Asked

home-kind-lookup = Look up
home-kind-view = View
home-kind-borrow = Borrow
home-kind-export = Export
home-state-pending = Waiting for approval
home-state-approved = Approved
home-state-rejected = Rejected
home-state-cancelled = Withdrawn
home-state-expired = Expired

home-approvals-title = Requests waiting for your decision
home-approvals-count = { $count ->
    [0] Nothing waits for your decision.
    [one] One request waits for your decision, oldest first:
   *[other] { $count } requests wait for your decision, oldest first:
}
home-decide = Decide
home-approvals-open = Open the approval queue

home-loans-title = Loans desk
home-ready-title = Files to hand out
home-ready-none = No approved loan waits to be handed out.
home-due-title = Loans due and overdue
home-due-none = No loan is due within a week.
home-overdue = Overdue
home-due-soon = Due soon
home-loans-open = Open the loans desk

home-mine-title = My requests
home-mine-none = You have no request waiting or approved.
home-grants-title = My access in force
home-grants-none = You hold no access in force.
home-time-left = { $left } left
home-open-viewer = Open { $name } in the viewer

home-audit-title = Audit trail
home-chain-length = The chain holds { $count } events.
home-chain-ok = Last check: intact up to event { $seq }, at { $when } by { $name }.
home-chain-broken = Last check: BROKEN at event { $seq }, at { $when } by { $name }.
home-chain-never = The chain has not been checked from here yet.
home-recent-title = Recent events (page views left out)
home-audit-open = Open the audit trail

home-admin-title = Administration
home-accounts = { $total } accounts, { $active } active.
home-accounts-open = Manage accounts
home-scrub-clean = Last integrity scrub { $when }: clean, { $files } files verified.
home-scrub-problems = Last integrity scrub { $when }: { $damaged } damaged, { $missing } missing.
home-scrub-never = No integrity scrub has run yet.
home-scrub-open = Open the scrub results

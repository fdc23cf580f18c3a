# requests: filled by the pages of this area. Keys are the same in every language.
# Requests, approvals, grants, exports and the loans desk (prefix req-, flash-req-), and the
# shared words for request kinds (kind-), request states (state-), grant states
# (grant-state-) and loan states (loan-state-).

kind-lookup = lookup
kind-view = view
kind-borrow = loan
kind-export = export
kind-destroy = destruction

state-pending = pending
state-approved = approved
state-rejected = rejected
state-cancelled = cancelled
state-expired = expired

grant-state-active = active
grant-state-expired = expired
grant-state-revoked = revoked
grant-state-returned = returned

loan-state-out = on loan
loan-state-overdue = overdue
loan-state-returned = returned

req-decision-approve = approved
req-decision-reject = rejected

# Field names inside translated messages.
field-kind = kind of request
field-duration_hours = duration
field-comment = comment
field-reason = reason
field-condition = condition
field-due_date = due date
field-request = request number

req-notice-filed = Your request has been filed.
req-not-done = This could not be done:

req-col-record = Record
req-col-kind = Kind
req-col-purpose = Purpose
req-col-state = State
req-col-approvals = Approvals
req-col-grant = Grant
req-col-when = When
req-col-who = Who
req-col-decision = Decision
req-col-comment = Comment
req-col-holder = Holder
req-col-valid = Valid
req-col-borrower = Borrower
req-col-approved-by = Approved by
req-col-grant-until = Grant ends
req-col-out-since = Out since
req-col-out = Out
req-col-due = Due back
req-col-back = Back

req-hours = { $hours ->
    [one] { $hours } hour
   *[other] { $hours } hours
}
req-filed-at = filed { $when }
req-waits-until = waits for a decision until { $when }
req-waits-for-decision-until = waits for a decision until { $when }
req-waits-until-label = Waits until
req-approvals-count = { $done } of { $needed }
req-approvals-needed = { $done } of { $needed } needed, by a { $role }
req-of-department = of { $department }
req-grant-until = until { $until }
req-grant-was-until = was valid until { $until }
req-time-left = { $left } left
req-details = Details
req-by = by { $name }

req-mine-title = My requests
req-mine-how-to-ask = To ask for access, find the record and use the request form on its page:
req-mine-empty = You have not asked for anything yet.
req-cancel-button = Cancel request
req-export-encrypt = Encrypt the zip with a password
req-export-prepare = Prepare download
req-open-in-viewer = Open { $name } in the viewer
req-no-files = The record has no files to view.
req-collect-at-desk = Collect the file at the loans desk with this request number:

req-page-title = { $kind } request · { $reference }
req-requested-by = Requested by
req-requester = Requester
req-duration-asked = Duration asked
req-decisions = Decisions
req-no-decision = No decision yet.
req-your-decision = Your decision
req-approve-comment = Comment (optional)
req-approve-button = Approve
req-reject-comment = Why it is rejected (required)
req-reject-button = Reject
req-revoke-title = Revoke the grant
req-revoke-explain = Ends the grant at once: the viewer, unmasked values, downloads and the loans desk stop honouring it on the next request.
req-revoke-reason = Reason (kept in the audit trail)
req-revoke-button = Revoke

req-queue-title = Approval queue
req-queue-waiting = { $count ->
    [0] Nothing waits for your decision.
    [one] { $count } request waits for your decision.
   *[other] { $count } requests wait for your decision.
}
req-queue-empty = Nothing waits for you.
req-kind-for-hours = { $kind }, for { $hours ->
    [one] { $hours } hour
   *[other] { $hours } hours
}

req-grants-title = Active grants
req-grants-explain = Grants in force on records you may see, the soonest to end first. Revoking ends a grant at once: the viewer, unmasked values, downloads and the loans desk stop honouring it on the next request.
req-grants-empty = No grant is in force on the records you may see.

req-export-title = Export of { $reference } is ready
req-export-contents = { $files ->
    [one] { $files } file and a manifest, as one zip.
   *[other] { $files } files and a manifest, as one zip.
}
req-export-download = Download the zip
req-export-link-rules = The link works once and expires at { $until } (at most { $minutes } minutes, never after the grant). The download is recorded in the audit trail.
req-export-password-once = Zip password — shown only this once:
req-export-password-keep = Write it down or put it in your password manager now. It will not be shown again, and Strongroom cannot recover it: without it, the zip cannot be opened. Preparing the download again makes a new password and replaces this link.
req-export-encrypted-earlier = The zip is encrypted with the password shown when it was prepared.
req-back-to-mine = Back to my requests

req-loans-title = Loans desk
req-loans-register = Loans register
req-loans-ready = Ready to hand out
req-loans-hand-out = Hand out
req-loans-ready-empty = No approved loan request is waiting.
req-due-back-on = Due back on
req-checkout-button = Lend
req-loans-by-number = Hand out by request number
req-loans-by-number-explain = For an approved loan request: the borrower's request page shows its request number.
req-request-number = Request number
req-loans-out = Out on loan
req-loans-overdue-count = { $count } overdue
req-loans-take-back = Take back
req-condition = Condition
req-return-button = Take back
req-loans-out-empty = No file is out on loan.
req-loans-returned = Recently returned
req-loans-returned-empty = Nothing returned yet.

req-loans-sheet-name = Loans register
req-loans-col-reference = Reference
req-loans-col-title = Title
req-loans-col-borrower = Borrower
req-loans-col-approved_by = Approved by
req-loans-col-checked_out_by = Lent by
req-loans-col-out_at = Out since
req-loans-col-due_date = Due back
req-loans-col-returned_at = Returned
req-loans-col-condition = Condition on return
req-loans-col-overdue = Overdue

flash-req-filed = Your { $kind } request for { $reference } has been filed.
flash-req-approved = You approved the { $kind } request of { $requester } for { $reference }: { $done } of { $needed } approvals, now { $state }.
flash-req-rejected = You rejected the { $kind } request of { $requester } for { $reference }.
flash-req-cancelled = Your { $kind } request for { $reference } is cancelled.
flash-req-revoked = The { $kind } grant of { $holder } on { $reference } is revoked: it stopped working at once.
flash-req-lent = { $reference } lent to { $borrower }, due back on { $due }.
flash-req-returned = { $reference } taken back from { $borrower }; its condition is noted.
flash-req-export-created = The export of { $reference } is ready to download.

## Leavers at the loans desk
req-holder-left = holder has left: { $name }
req-loans-col-holder_left = Holder has left
req-cancelled-account-disabled = cancelled because the requester's account was disabled

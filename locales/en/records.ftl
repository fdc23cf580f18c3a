# records: filled by the pages of this area. Keys are the same in every language.

## Shared vocabulary of the archive (owned here; used by every page)
physical-in_store = in store
physical-on_loan = on loan
physical-missing = missing
physical-destroyed = destroyed
type-text = text
type-number = number
type-date = date
type-phone = phone number
type-id_number = ID number
type-email = e-mail
type-choice = choice
sensitivity-public = public
sensitivity-internal = internal
sensitivity-confidential = confidential
sensitivity-secret = secret

## Filing
rec-new-title = File a record
rec-category = Category
rec-new-choose = Choose
rec-new-choose-hint = Choose the category the record belongs to: its fields make the form.
rec-title = Title
rec-reference = Reference
rec-choose-one = (choose one)
rec-sensitive-hint = sensitive: stored encrypted, shown masked
rec-title-warning-hint = Titles are never masked. Leave the person's name, phone or ID number out of the title, or confirm below that the record must be filed with this title.
rec-file-anyway = File anyway, with this title
rec-save-anyway = Save anyway, with this title
rec-new-physical = Physical file (optional): where the paper file is kept
rec-new-physical-hint = Choose a storeroom, shelf and box of the register; leave all three empty for a record without a paper file.
rec-storeroom = Storeroom
rec-shelf = Shelf
rec-box = Box
rec-new-submit = File the record

## The record page
rec-nav-label = Parts of this record
rec-tab-details = Details
rec-tab-physical = Physical file
rec-tab-files = Files
rec-tab-request = Request access
rec-tab-history = History
rec-revision-n = revision { $revision }
rec-filed-on = filed { $when }
rec-masked = masked
rec-masked-hint = Masked values are shown in full only under an approved lookup or view request.
rec-location = Location
rec-no-physical = No paper file is registered for this record.
rec-moves = Moves and status changes
rec-when = When
rec-from = From
rec-to = To
rec-status = Status
rec-why = Why
rec-by = By
rec-who = Who
rec-move-reason-filed = filed
rec-move-title = Move the file or change its status
rec-move-hint = Give a new location, a new status, or both.
rec-status-unchanged = (unchanged)
rec-reason = Reason
rec-move-submit = Save the move
rec-view-grant = You hold a view grant on this record until { $until }: open its files in the view-only viewer.
rec-file-version = Version
rec-file-name = Name
rec-file-type = Type
rec-file-size = Size
rec-file-uploaded = Uploaded
rec-open-viewer = Open in viewer
rec-no-files = No files.
rec-files-need-grant = To read these files, request a view below.
rec-upload-label = Upload a scan or file (stored encrypted; a file already there gets a new version)
rec-upload-submit = Upload
rec-upload-failed = Upload failed
rec-upload-lost = Upload failed: the connection was lost.
rec-upload-done = Uploaded and encrypted.
rec-my-requests = Your requests for this record
rec-filed = Filed
rec-kind = Kind
rec-purpose = Purpose
rec-state = State
rec-grant = Grant
rec-until = until { $when }
rec-ask-kind = What do you need?
rec-explain-lookup = see this record's masked details (phone, ID numbers…) in full.
rec-explain-view = read its files in the view-only viewer (no download, no printing).
rec-explain-borrow = take the paper file out; collect it at the loans desk.
rec-explain-export = take copies of its files out as a zip, downloaded once.
rec-route-none = Not available for { $sensitivity } records.
rec-route-at-once = Approved at once; up to { $hours } hours.
rec-route-needs = Needs { $approvals } { $approvals ->
    [one] approval
   *[other] approvals
  } by a { $role }; up to { $hours } hours.
rec-route-same-department = (of the record's department)
rec-approver-supervisor = supervisor
rec-approver-archivist = archivist
rec-approver-admin = administrator
rec-approver-auditor = auditor
rec-approver-employee = employee
rec-ask-purpose = Purpose: why you need it
rec-ask-purpose-rule = at least { $min } characters, or { $min_cjk } Chinese characters (letters and digits count, a Chinese character as 2.5; spaces and punctuation do not). The approvers read it and it is kept in the audit trail.
rec-ask-hours = For how many hours (at most the limit shown for the kind)
rec-ask-submit = Send request
rec-what-changed = What changed
rec-history-filed = filed
rec-change-changed = changed
rec-change-added = added
rec-change-removed = removed
rec-edit-title = Correct this record
rec-edit-sensitive-hint = (sensitive: leave empty to keep)
rec-edit-reason = Reason for the correction
rec-edit-submit = Save correction

## Confirmations
flash-rec-filed = Record { $reference } filed.
flash-rec-corrected = Record { $reference } corrected (revision { $revision }).
flash-rec-moved = The location and status of { $reference } are saved.
flash-rec-uploaded = { $name } uploaded (version { $version }).

## Field names inside messages
field-category_id = category

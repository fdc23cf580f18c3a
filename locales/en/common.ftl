# Shared words: the frame of every page, sign-in, account settings, errors, durations.
# Keys are the same in every language (a test holds the catalogs to that).

app-name = Strongroom
skip-to-content = Skip to content
nav-label = Main navigation
nav-home = Home
nav-accounts = Accounts
nav-scrub = Integrity scrub
nav-audit = Audit trail
nav-search = Search
nav-categories = Categories
nav-file-record = File a record
nav-my-requests = My requests
nav-approvals = Approvals
nav-grants = Active grants
nav-loans = Loans desk
nav-locations = Storerooms
nav-settings = Settings
nav-password = Password
nav-menu = Menu
sign-out = Sign out
signed-in-as = Signed in as { $name }
language = Language
language-switch = Switch language

login-title = Sign in
login-username = Username
login-password = Password
login-submit = Sign in
login-intro = Sign in with the account your administrator gave you.

password-title = Change password
password-must-change = You must choose a new password before continuing.
password-current = Current password
password-new = New password
password-new-hint = At least { $min } characters.
password-confirm = Repeat the new password
password-submit = Change password

settings-title = Settings
settings-language = Interface language
settings-language-browser = As my browser asks
settings-time-zone = Time zone
settings-time-zone-vault = The vault's ({ $zone })
settings-time-zone-hint = Every time is shown in this zone.
settings-submit = Save settings
settings-saved = Your settings are saved.
settings-now = Now: { $now }

error-title = Error { $status }
error-back = Back to the home page
error-sign-in = Sign in again
form-errors-title = The form could not be saved. Please correct:
form-required = required
optional = optional
confirm-title = Please confirm
cancel = Cancel
save = Save
back = Back
yes = Yes
no = No
none = —
actions = Actions
show = Show
filter = Filter
clear = Clear
download-csv = Download CSV
download-xlsx = Download Excel (.xlsx)
previous-page = Previous
next-page = Next
page-of = Page { $page } of { $pages }

duration-days-hours = { $days } d { $hours } h
duration-hours-minutes = { $hours } h { $minutes } min
duration-minutes = { $minutes } min
duration-under-a-minute = less than a minute

role-archivist = Archivist
role-employee = Employee
role-supervisor = Supervisor
role-auditor = Auditor
role-admin = Administrator

# Field names as they appear inside translated messages.
field-username = username
field-password = password
field-new_password = new password
field-confirm_password = repeated password
field-current_password = current password
field-display_name = name
field-department = department
field-roles = roles
field-time_zone = time zone
field-title = title
field-purpose = purpose

flash-settings-saved = Your settings are saved.
flash-password-changed = Your password is changed.
error-unavailable = The service is temporarily unavailable. Nothing you did caused this; please try again in a few minutes.

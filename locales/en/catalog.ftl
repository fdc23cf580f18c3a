# Categories (the classification tree and its field schemas) and the search page.

cat-list-title = Categories
cat-path = Category
cat-code = Code
cat-code-hint = 2 to 12 letters and digits, starting with a letter, e.g. CUST
cat-name = Name
cat-parent = Parent category
cat-top-level = (top level)
cat-sensitivity = Sensitivity
cat-department = Owning department
cat-retention = Kept for
cat-retention-years = Retention (years)
cat-years = { $years ->
    [one] { $years } year
   *[other] { $years } years
}
cat-field-count = Fields
cat-none-yet = No categories yet.
cat-new-title = New category
cat-new-fields-later = You define the category's fields on its page once it exists.
cat-create = Create category
cat-summary = Sensitivity: { $sensitivity } · department: { $department } · kept { $years } years · schema version { $version }
cat-file-here = File a record in this category
cat-search-here = Search this category
cat-fields-title = Fields
cat-field-name = Field name
cat-field-name-hint = lower-case letters, digits and _, e.g. customer_phone
cat-field-label = Label
cat-field-type = Type
cat-field-required = Required
cat-field-sensitive = Sensitive
cat-field-choices = Choices (comma-separated, for a choice field)
cat-sensitive-yes = Sensitive: encrypted and masked
cat-sensitive-no = Not sensitive: stored and shown in full
cat-sensitive-auto = Automatic: sensitive if it holds personal data
cat-sensitive-stays = A sensitive field stays sensitive. To stop protecting it, add a new field instead.
cat-make-sensitive-hint = Choosing Sensitive encrypts the values already filed under this field, in every record and in their history, when you save.
cat-looks-personal = This field looks like it holds { $kind }. It is sensitive unless you tick the confirmation below.
cat-confirm-not-sensitive = I confirm this field holds no personal data and may be shown in full to everyone who can search
cat-plain-personal-warning = Not sensitive although they look like personal data: { $fields }. Their values are shown in full to every employee. Make them sensitive below to encrypt and mask them, existing values included.
cat-edit-title = Edit the category
cat-privacy-default = Privacy by default: a field whose type is phone, ID number or e-mail, or whose name or label reads like an ID number, a person's name, a phone number, an e-mail or postal address or a bank account or card, is sensitive (encrypted, masked for anyone without an approved lookup) unless you say it is not and confirm it. A field that is not sensitive is stored in plain text, shown in full to every employee and found by partial search.
cat-schema-rules = A field's type cannot change once it exists: add a new field instead. New fields are optional for records filed before them; removing a field keeps its old values in the records' history.
cat-row-existing = Field: { $name }
cat-row-new = New field { $n }
cat-rows-hint = Leave a row's field name empty to remove that field (or to leave a blank row unused).
cat-save = Save category

cat-sensitivity-public = Public
cat-sensitivity-internal = Internal
cat-sensitivity-confidential = Confidential
cat-sensitivity-secret = Secret

cat-type-text = Text
cat-type-number = Number
cat-type-date = Date
cat-type-phone = Phone number
cat-type-id_number = ID number
cat-type-email = E-mail address
cat-type-choice = Choice from a list

cat-personal-id_number = an ID number
cat-personal-name = a person's name
cat-personal-phone = a phone number
cat-personal-email = an e-mail address
cat-personal-address = an address
cat-personal-bank = a bank account or card number

flash-cat-created = Category { $name } created. Now define its fields.
flash-cat-saved = Category { $name } saved.

field-code = code
field-parent_id = parent category
field-sensitivity = sensitivity
field-retention_years = retention

search-title = Search records
search-q = Reference, title or name (part of it)
search-phone = Phone
search-phone-hint = exact match on the full number (e.g. 13812345678; spaces, dashes and +86 are ignored); part of a number finds nothing, because phone numbers are stored encrypted
search-id-number = ID number
search-id-number-hint = exact match on the full number
search-category = Category
search-any-category = (any)
search-from = Filed from
search-to = Filed until
search-storeroom = Storeroom
search-shelf = Shelf
search-box = Box
search-submit = Search
search-masked-note = Sensitive details are masked. To see them in full, open the record and request a lookup.
search-results-title = Results
search-count = { $more ->
    [1] Results { $first } to { $last }; more on the next page.
   *[other] { $first ->
        [1] { $last ->
            [1] 1 record found.
           *[other] { $last } records found.
        }
       *[other] Results { $first } to { $last }.
    }
}
search-nothing = No record matches.
search-col-reference = Reference
search-col-title = Title
search-col-category = Category
search-col-details = Details
search-col-location = Location
search-col-filed = Filed
search-masked = masked
search-pages = Result pages
search-page = Page { $page }
search-status-in_store = in store
search-status-on_loan = on loan
search-status-missing = missing
search-status-destroyed = destroyed

# register: filled by the pages of this area. Keys are the same in every language.

loc-title = Storerooms
loc-intro = The location register: storerooms, their shelves and the boxes on them, with the number of paper files in each. Codes are the keys used when filing and on labels and never change; names can be changed at any time.
loc-storeroom = Storeroom
loc-shelf = Shelf
loc-box = Box
loc-level-storeroom = Storeroom
loc-level-shelf = Shelf
loc-level-box = Box
loc-records = Paper files
loc-empty = The register is empty: add the first storeroom below.
loc-new-storeroom = New storeroom
loc-code = Code
loc-code-hint = 1 to 32 letters, digits, '-', '_' or '.'; it cannot be changed later
loc-name = Name
loc-name-hint = e.g. Basement archive or 一号库房
loc-add-storeroom = Add storeroom
loc-path = Location
loc-holds = { $count ->
    [one] Holds one paper file.
   *[other] Holds { $count } paper files.
}
loc-rename = Name
loc-rename-hint = Only the name changes; the code stays, so filed records and labels keep their location.
loc-rename-submit = Rename
loc-shelves = Shelves
loc-boxes = Boxes
loc-none-yet = None yet.
loc-add-shelf = Add a shelf
loc-add-box = Add a box
loc-contents = Paper files here
loc-reference = Reference
loc-record-title = Title
loc-paper-status = Paper file
loc-no-records = No paper file you may see is here.
loc-hidden = { $count ->
    [one] One more paper file here belongs to records you may not see.
   *[other] { $count } more paper files here belong to records you may not see.
}
loc-pages = Pages
loc-status-in_store = In store
loc-status-on_loan = On loan
loc-status-missing = Missing
loc-status-destroyed = Destroyed

flash-loc-created = Storeroom { $code } added.
flash-loc-shelf-created = Shelf { $code } added.
flash-loc-box-created = Box { $code } added.
flash-loc-renamed = { $code } is now called { $name }.

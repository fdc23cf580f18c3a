# viewer: filled by the pages of this area. Keys are the same in every language.

view-intro = Viewing { $file } (version { $version }) under your view grant.
view-grant-until = Valid until { $when }:
view-time-left = { $left } left
view-only-note = View only: there is no download here, and a copy or a printout needs an approved export request. Every page you open is recorded in the audit trail.
view-print-note = This document is shown in the viewer only. Printing it needs an approved export request: ask for an export on the record's page.
view-files = Files:
view-files-label = Files of this record
view-cannot-show = This file cannot be shown in the viewer: { $problem }.
view-toolbar = Viewer controls
view-zoom = Zoom
view-zoom-in = Zoom in
view-zoom-out = Zoom out
view-zoom-apply = Apply
view-fit-width = Fit to width
view-page-previous = Previous page
view-page-next = Next page
view-go-to = Go to page
view-go = Go
view-page-of = Page { $page } of { $total }
view-page-alt = Page { $page }
view-page-count = { $total ->
    [one] 1 page
   *[other] { $total } pages
}
view-page-failed = This page could not be shown. Reload the page to try again.
view-page-busy = The viewer is busy; this page will load in a moment.
view-pages-label = Pages of the document
view-windows-label = Other pages of the document
view-window = Pages { $first }–{ $last } of { $total }
view-first = First pages
view-previous-pages = Previous pages
view-next-pages = Next pages
view-last = Last pages
view-ended-title = This view grant has ended
view-ended-revoked = { $who } revoked your view grant on { $when }. Its pages can no longer be shown.
view-ended-expired = Your view grant expired on { $when }. Its pages can no longer be shown.
view-ended-other = Your view grant has ended. Its pages can no longer be shown.
view-ended-someone = A supervisor
view-ended-hint = To read the document again, send a new view request on the record's page.
view-ended-request = Request access again

# requests: filled by the pages of this area. Keys are the same in every language.

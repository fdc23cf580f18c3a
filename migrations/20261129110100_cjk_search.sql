-- Chinese (and Japanese, Korean) partial search. A trigram needs three characters, and a
-- Chinese user searches with one or two (宏达, 合同): pg_trgm cannot answer those from
-- its index. search_cjk_grams gives the unigrams and bigrams of every CJK run of a text;
-- a GIN index over the grams of records.search_text answers a fragment of any length:
-- one character through its unigram, two or more through all their bigrams, and the
-- search rechecks the candidates with ILIKE against the text itself, so hits are exact.
-- Latin fragments keep using records_search_trgm_idx. The character classes are those of
-- `records::search::is_cjk`: kana, CJK ideographs (extension A, the unified block,
-- compatibility ideographs, the supplementary planes) and Hangul syllables.
CREATE FUNCTION search_cjk_grams(t text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(g), '{}')
    FROM regexp_matches(t, '[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003ffff]+', 'g') AS m(run),
         generate_series(1, char_length(m.run[1])) AS i,
         LATERAL (VALUES (substr(m.run[1], i, 1)),
                         (CASE WHEN i < char_length(m.run[1]) THEN substr(m.run[1], i, 2) END)) AS v(g)
    WHERE g IS NOT NULL
$$;

CREATE INDEX records_search_cjk_idx ON records USING gin (search_cjk_grams(search_text));

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::{
    Category, CategoryId, NewCategory, PhysicalView, Record, RecordId, Revision, SealedValue,
};
use super::schema::FieldDef;
use crate::policy::Sensitivity;
use crate::users::UserId;

#[derive(sqlx::FromRow)]
struct CategoryRow {
    id: Uuid,
    parent_id: Option<Uuid>,
    code: String,
    name: String,
    sensitivity: String,
    department: String,
    retention_years: i32,
    fields: Value,
    review: bool,
    schema_version: i32,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

pub(super) async fn all_categories(conn: &mut PgConnection) -> sqlx::Result<Vec<Category>> {
    let rows: Vec<CategoryRow> = sqlx::query_as(
        "SELECT id, parent_id, code, name, sensitivity, department, retention_years, fields, \
         review, schema_version, created_at, updated_at FROM categories",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(category_of).collect())
}

/// One category with its path (a recursive walk up its ancestors, not the whole tree).
pub(super) async fn one_category(
    conn: &mut PgConnection,
    id: CategoryId,
) -> sqlx::Result<Option<Category>> {
    let row: Option<CategoryRow> = sqlx::query_as(
        "SELECT id, parent_id, code, name, sensitivity, department, retention_years, fields, \
         review, schema_version, created_at, updated_at FROM categories WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let path: Option<String> = sqlx::query_scalar(
        "WITH RECURSIVE up(id, parent_id, name, depth) AS ( \
           SELECT id, parent_id, name, 0 FROM categories WHERE id = $1 \
           UNION ALL \
           SELECT c.id, c.parent_id, c.name, up.depth + 1 FROM categories c \
           JOIN up ON c.id = up.parent_id WHERE up.depth < 64) \
         SELECT string_agg(name, ' / ' ORDER BY depth DESC) FROM up",
    )
    .bind(id)
    .fetch_one(conn)
    .await?;
    let mut c = category_of(row);
    c.path = path.unwrap_or_else(|| c.name.clone());
    Ok(Some(c))
}

fn category_of(r: CategoryRow) -> Category {
    Category {
        id: CategoryId(r.id),
        parent_id: r.parent_id.map(CategoryId),
        code: r.code,
        name: r.name,
        path: String::new(),
        sensitivity: Sensitivity::parse(&r.sensitivity).unwrap_or(Sensitivity::Secret),
        department: r.department,
        retention_years: r.retention_years,
        fields: serde_json::from_value::<Vec<FieldDef>>(r.fields).unwrap_or_default(),
        review: r.review,
        schema_version: r.schema_version,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

pub(super) async fn category_exists(conn: &mut PgConnection, id: CategoryId) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM categories WHERE id = $1)")
        .bind(id)
        .fetch_one(conn)
        .await
}

pub(super) async fn insert_category(
    conn: &mut PgConnection,
    id: CategoryId,
    c: &NewCategory,
    by: UserId,
) -> sqlx::Result<()> {
    let fields = serde_json::to_value(&c.fields).unwrap_or(Value::Array(vec![]));
    sqlx::query(
        "INSERT INTO categories (id, parent_id, code, name, sensitivity, department, retention_years, fields, created_by, review) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id)
    .bind(c.parent_id)
    .bind(&c.code)
    .bind(c.name.trim())
    .bind(c.sensitivity.as_str())
    .bind(c.department.trim())
    .bind(c.retention_years)
    .bind(&fields)
    .bind(by)
    .bind(c.review)
    .execute(&mut *conn)
    .await?;
    sqlx::query("INSERT INTO category_schema_versions (category_id, version, fields, changed_by) VALUES ($1, 1, $2, $3)")
        .bind(id)
        .bind(&fields)
        .bind(by)
        .execute(conn)
        .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn update_category(
    conn: &mut PgConnection,
    id: CategoryId,
    name: &str,
    sensitivity: Sensitivity,
    department: &str,
    retention_years: i32,
    fields: Option<&[FieldDef]>,
    by: UserId,
) -> sqlx::Result<()> {
    let version: i32 = sqlx::query_scalar(
        "UPDATE categories SET name = $2, sensitivity = $3, department = $4, retention_years = $5, \
         fields = COALESCE($6, fields), \
         schema_version = schema_version + CASE WHEN $6::jsonb IS NULL OR $6 = fields THEN 0 ELSE 1 END, \
         updated_at = now() WHERE id = $1 RETURNING schema_version",
    )
    .bind(id)
    .bind(name.trim())
    .bind(sensitivity.as_str())
    .bind(department.trim())
    .bind(retention_years)
    .bind(fields.map(|f| serde_json::to_value(f).unwrap_or(Value::Array(vec![]))))
    .bind(by)
    .fetch_one(&mut *conn)
    .await?;
    if let Some(f) = fields {
        sqlx::query(
            "INSERT INTO category_schema_versions (category_id, version, fields, changed_by) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(version)
        .bind(serde_json::to_value(f).unwrap_or(Value::Array(vec![])))
        .bind(by)
        .execute(conn)
        .await?;
    }
    Ok(())
}

pub(super) async fn next_reference(
    conn: &mut PgConnection,
    category: CategoryId,
    year: i32,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO reference_counters (category_id, year, last_value) VALUES ($1, $2, 1) \
         ON CONFLICT (category_id, year) DO UPDATE SET last_value = reference_counters.last_value + 1 \
         RETURNING last_value",
    )
    .bind(category)
    .bind(year)
    .fetch_one(conn)
    .await
}

pub(super) struct NewRow<'a> {
    pub id: RecordId,
    pub category_id: CategoryId,
    pub reference: &'a str,
    pub title: &'a str,
    pub fields: Value,
    pub search_text: &'a str,
    pub schema_version: i32,
    pub author: UserId,
    pub external_id: Option<&'a str>,
}

pub(super) async fn insert_record(conn: &mut PgConnection, r: &NewRow<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO records (id, category_id, reference, title, fields, search_text, schema_version, \
         created_by, updated_by, external_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
    )
    .bind(r.id)
    .bind(r.category_id)
    .bind(r.reference)
    .bind(r.title)
    .bind(&r.fields)
    .bind(r.search_text)
    .bind(r.schema_version)
    .bind(r.author)
    .bind(r.external_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) const RECORD_COLUMNS: &str =
    "r.id, r.category_id, r.reference, r.title, r.fields, r.revision, r.schema_version, r.created_at, r.updated_at";

pub(super) async fn find_record(
    conn: &mut PgConnection,
    id: RecordId,
) -> sqlx::Result<Option<Record>> {
    sqlx::query_as(&format!(
        "SELECT {RECORD_COLUMNS} FROM records r WHERE r.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub(super) async fn lock_record(conn: &mut PgConnection, id: RecordId) -> sqlx::Result<Record> {
    sqlx::query_as(&format!(
        "SELECT {RECORD_COLUMNS} FROM records r WHERE r.id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_one(conn)
    .await
}

pub(super) async fn sealed_values(
    conn: &mut PgConnection,
    id: RecordId,
) -> sqlx::Result<Vec<SealedValue>> {
    sqlx::query_as(
        "SELECT field, ciphertext, kek_id FROM record_sensitive_values WHERE record_id = $1",
    )
    .bind(id)
    .fetch_all(conn)
    .await
}

pub(super) async fn sealed_values_of(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> sqlx::Result<Vec<(Uuid, SealedValue)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        record_id: Uuid,
        #[sqlx(flatten)]
        v: SealedValue,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT record_id, field, ciphertext, kek_id FROM record_sensitive_values WHERE record_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.record_id, r.v)).collect())
}

pub(super) async fn upsert_sealed(
    conn: &mut PgConnection,
    id: RecordId,
    field: &str,
    ciphertext: &[u8],
    kek_id: &str,
    index: Option<&[u8]>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO record_sensitive_values (record_id, field, ciphertext, kek_id, blind_index) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (record_id, field) DO UPDATE \
         SET ciphertext = $3, kek_id = $4, blind_index = $5",
    )
    .bind(id)
    .bind(field)
    .bind(ciphertext)
    .bind(kek_id)
    .bind(index)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn delete_sealed(
    conn: &mut PgConnection,
    id: RecordId,
    field: &str,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM record_sensitive_values WHERE record_id = $1 AND field = $2")
        .bind(id)
        .bind(field)
        .execute(conn)
        .await?;
    Ok(())
}

pub(super) async fn physical(
    conn: &mut PgConnection,
    id: RecordId,
) -> sqlx::Result<Option<PhysicalView>> {
    sqlx::query_as(
        "SELECT r.code AS storeroom, s.code AS shelf, b.code AS box_code, p.status \
         FROM record_physical p LEFT JOIN boxes b ON b.id = p.box_id \
         LEFT JOIN shelves s ON s.id = b.shelf_id LEFT JOIN storerooms r ON r.id = s.storeroom_id \
         WHERE p.record_id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub(super) async fn physical_of(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> sqlx::Result<Vec<(Uuid, PhysicalView)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        record_id: Uuid,
        #[sqlx(flatten)]
        v: PhysicalView,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT p.record_id, r.code AS storeroom, s.code AS shelf, b.code AS box_code, p.status \
         FROM record_physical p LEFT JOIN boxes b ON b.id = p.box_id \
         LEFT JOIN shelves s ON s.id = b.shelf_id LEFT JOIN storerooms r ON r.id = s.storeroom_id \
         WHERE p.record_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.record_id, r.v)).collect())
}

pub(super) struct RevisionRow<'a> {
    pub record_id: RecordId,
    pub revision: i32,
    pub author_id: UserId,
    pub author: &'a str,
    pub reason: &'a str,
    pub changes: Value,
    pub previous_title: &'a str,
    pub previous_fields: &'a Value,
}

pub(super) async fn insert_revision(
    conn: &mut PgConnection,
    r: &RevisionRow<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO record_revisions (record_id, revision, author_id, author, reason, changes, \
         previous_title, previous_fields) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(r.record_id)
    .bind(r.revision)
    .bind(r.author_id)
    .bind(r.author)
    .bind(r.reason)
    .bind(&r.changes)
    .bind(r.previous_title)
    .bind(r.previous_fields)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn keep_sealed_in_revision(
    conn: &mut PgConnection,
    id: RecordId,
    revision: i32,
    s: &SealedValue,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO record_revision_sensitive_values (record_id, revision, field, ciphertext, kek_id) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(revision)
    .bind(&s.field)
    .bind(&s.ciphertext)
    .bind(&s.kek_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn update_record(
    conn: &mut PgConnection,
    id: RecordId,
    title: &str,
    fields: &Value,
    search_text: &str,
    revision: i32,
    by: UserId,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE records SET title = $2, fields = $3, search_text = $4, revision = $5, \
         updated_at = now(), updated_by = $6 WHERE id = $1",
    )
    .bind(id)
    .bind(title)
    .bind(fields)
    .bind(search_text)
    .bind(revision)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn revisions(
    conn: &mut PgConnection,
    id: RecordId,
) -> sqlx::Result<Vec<Revision>> {
    sqlx::query_as(
        "SELECT revision, author, created_at, reason, changes, reviewer FROM record_revisions \
         WHERE record_id = $1 ORDER BY revision",
    )
    .bind(id)
    .fetch_all(conn)
    .await
}

pub(super) async fn creation(
    conn: &mut PgConnection,
    id: RecordId,
) -> sqlx::Result<(String, Option<String>)> {
    sqlx::query_as(
        "SELECT COALESCE(u.username, 'import'), r.reviewed_by FROM records r LEFT JOIN users u ON u.id = r.created_by WHERE r.id = $1",
    )
    .bind(id)
    .fetch_one(conn)
    .await
}

/// Turns review before changes take effect on or off for a category.
pub(super) async fn set_review(
    conn: &mut PgConnection,
    id: CategoryId,
    review: bool,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE categories SET review = $2 WHERE id = $1")
        .bind(id)
        .bind(review)
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks a filing or a revision as made under review: who proposed it (the author) and
/// who approved it.
pub(super) async fn mark_reviewed(
    conn: &mut PgConnection,
    id: RecordId,
    revision: i32,
    proposer: (UserId, &str),
    reviewer: &str,
) -> sqlx::Result<()> {
    if revision == 1 {
        sqlx::query("UPDATE records SET created_by = $2, reviewed_by = $3 WHERE id = $1")
            .bind(id)
            .bind(proposer.0)
            .bind(reviewer)
            .execute(conn)
            .await?;
    } else {
        sqlx::query(
            "UPDATE record_revisions SET author_id = $3, author = $4, reviewer = $5 \
             WHERE record_id = $1 AND revision = $2",
        )
        .bind(id)
        .bind(revision)
        .bind(proposer.0)
        .bind(proposer.1)
        .bind(reviewer)
        .execute(conn)
        .await?;
    }
    Ok(())
}

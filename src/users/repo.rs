use sqlx::PgConnection;
use uuid::Uuid;

use super::model::{Role, User, UserId, UserRow};

const COLUMNS: &str = "id, username, display_name, department, roles, status, \
                       must_change_password, created_at, disabled_at, locale, time_zone, \
                       last_sign_in_at";

pub(super) struct Insert<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub department: &'a str,
    pub roles: &'a [Role],
    pub password_hash: &'a str,
    pub must_change_password: bool,
}

pub(super) async fn insert(conn: &mut PgConnection, u: &Insert<'_>) -> sqlx::Result<User> {
    let roles: Vec<&str> = u.roles.iter().map(|r| r.as_str()).collect();
    let row: UserRow = sqlx::query_as(&format!(
        "INSERT INTO users (id, username, display_name, department, roles, password_hash, \
         must_change_password) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(u.username)
    .bind(u.display_name)
    .bind(u.department)
    .bind(&roles)
    .bind(u.password_hash)
    .bind(u.must_change_password)
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

pub(super) async fn count(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(conn)
        .await
}

/// How many active administrators there are, for a change that may take one away. It
/// first takes a transaction-scoped lock on the set of administrators, so two such
/// changes (two administrators demoting or disabling each other at once) are counted one
/// after the other: the second sees the first's result and is refused as the last one.
pub(super) async fn count_active_admins(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('strongroom.admins'))")
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar(
        "SELECT count(*) FROM users WHERE status = 'active' AND 'admin' = ANY(roles)",
    )
    .fetch_one(conn)
    .await
}

pub(super) async fn find(conn: &mut PgConnection, id: UserId) -> sqlx::Result<Option<User>> {
    let row: Option<UserRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(Into::into))
}

pub(super) async fn lock(conn: &mut PgConnection, id: UserId) -> sqlx::Result<Option<User>> {
    let row: Option<UserRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Into::into))
}

pub(super) async fn find_by_username(
    conn: &mut PgConnection,
    username: &str,
) -> sqlx::Result<Option<User>> {
    let row: Option<UserRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE lower(username) = lower($1)"
    ))
    .bind(username)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Into::into))
}

pub(super) async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<User>> {
    let rows: Vec<UserRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users ORDER BY lower(username)"
    ))
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(super) async fn credentials(
    conn: &mut PgConnection,
    username: &str,
) -> sqlx::Result<Option<(User, String)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        user: UserRow,
        password_hash: String,
    }
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS}, password_hash FROM users WHERE lower(username) = lower($1)"
    ))
    .bind(username)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.user.into(), r.password_hash)))
}

pub(super) async fn set_disabled(conn: &mut PgConnection, id: UserId) -> sqlx::Result<User> {
    let row: UserRow = sqlx::query_as(&format!(
        "UPDATE users SET status = 'disabled', disabled_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

pub(super) async fn set_password(
    conn: &mut PgConnection,
    id: UserId,
    hash: &str,
    must_change: bool,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE users SET password_hash = $2, must_change_password = $3, \
         password_changed_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(hash)
    .bind(must_change)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn set_preferences(
    conn: &mut PgConnection,
    id: UserId,
    locale: Option<&str>,
    time_zone: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET locale = $2, time_zone = $3 WHERE id = $1")
        .bind(id.0)
        .bind(locale)
        .bind(time_zone)
        .execute(conn)
        .await?;
    Ok(())
}

pub(super) async fn set_profile(
    conn: &mut PgConnection,
    id: UserId,
    display_name: &str,
    department: &str,
    roles: &[Role],
) -> sqlx::Result<User> {
    let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    let row: UserRow = sqlx::query_as(&format!(
        "UPDATE users SET display_name = $2, department = $3, roles = $4 WHERE id = $1 \
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(display_name)
    .bind(department)
    .bind(&roles)
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

pub(super) async fn set_enabled(conn: &mut PgConnection, id: UserId) -> sqlx::Result<User> {
    let row: UserRow = sqlx::query_as(&format!(
        "UPDATE users SET status = 'active', disabled_at = NULL WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

/// Notes a successful sign-in.
pub(super) async fn set_last_sign_in(conn: &mut PgConnection, id: UserId) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET last_sign_in_at = now() WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Locks the rows of `ids` in id order. A change that locks one account and then records
/// who made it (a foreign key to the author's row takes a share lock on it) would
/// otherwise deadlock with the same change made the other way round at once (two
/// administrators disabling each other).
pub(super) async fn lock_in_order(conn: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query("SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

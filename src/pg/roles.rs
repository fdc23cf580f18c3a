//! The PostgreSQL roles of a vault: an owner that owns the schema and runs migrations, and
//! a runtime role the server connects as, which owns nothing (see `db::grant_runtime` for
//! what it may do).
//!
//! Guarantees:
//! * Passwords never appear in SQL text: a role's password is sent as a SCRAM-SHA-256
//!   verifier computed here, so neither PostgreSQL's statement log nor an error message
//!   can carry it.
//! * Role names are checked to be plain lower-case identifiers before they reach SQL.

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgConnection;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The roles the embedded cluster creates for its `strongroom` database.
pub const OWNER_ROLE: &str = "strongroom_owner";
pub const RUNTIME_ROLE: &str = "strongroom_runtime";

/// PostgreSQL's own default for SCRAM verifiers (`scram_iterations`).
const SCRAM_ITERATIONS: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error(
        "`{0}` cannot be used as a PostgreSQL role name here: use 1 to 63 lower-case letters, \
         digits and underscores, starting with a letter or underscore"
    )]
    BadName(String),
    #[error("could not {action}: {source}")]
    Sql {
        action: String,
        #[source]
        source: sqlx::Error,
    },
}

fn sql_err(action: impl Into<String>) -> impl FnOnce(sqlx::Error) -> RoleError {
    let action = action.into();
    move |source| RoleError::Sql { action, source }
}

/// `name` if it is a plain identifier that needs no quoting.
pub fn checked_name(name: &str) -> Result<&str, RoleError> {
    let mut chars = name.chars();
    let ok = name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(name)
    } else {
        Err(RoleError::BadName(name.to_owned()))
    }
}

/// Double-quotes an identifier for SQL text.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether a role exists.
pub async fn role_exists(conn: &mut PgConnection, name: &str) -> Result<bool, RoleError> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(name)
        .fetch_one(conn)
        .await
        .map_err(sql_err(format!("look up role {name}")))
}

/// Whether the connected role may create roles (superuser or CREATEROLE).
pub async fn can_create_roles(conn: &mut PgConnection) -> Result<bool, RoleError> {
    sqlx::query_scalar(
        "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(conn)
    .await
    .map_err(sql_err("look up the privileges of the connected role"))
}

/// Creates a login role that is not a superuser and cannot create databases or roles, or
/// brings an existing one to exactly that, with `password`.
pub async fn ensure_login_role(
    conn: &mut PgConnection,
    name: &str,
    password: &SecretString,
) -> Result<(), RoleError> {
    let name = checked_name(name)?;
    let verifier = scram_verifier(password);
    let attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";
    let verb = if role_exists(conn, name).await? {
        "ALTER"
    } else {
        "CREATE"
    };
    // The verifier is base64 and `$:` only, so it is safe inside a literal; utility
    // statements take no bind parameters.
    let sql = format!("{verb} ROLE {name} {attributes} PASSWORD '{verifier}'");
    match sqlx::query(&sql).execute(&mut *conn).await {
        Ok(_) => Ok(()),
        // Created meanwhile by a concurrent caller: set it up as an existing role.
        Err(sqlx::Error::Database(db))
            if verb == "CREATE" && db.code().as_deref() == Some("42710") =>
        {
            let sql = format!("ALTER ROLE {name} {attributes} PASSWORD '{verifier}'");
            sqlx::query(&sql)
                .execute(&mut *conn)
                .await
                .map(|_| ())
                .map_err(sql_err(format!("set up role {name}")))
        }
        Err(e) => Err(sql_err(format!("set up role {name}"))(e)),
    }
}

/// As a superuser connected to the vault's database: makes `owner` the owner of the
/// database, of the `public` schema and of every table, view, sequence, function and type
/// in it (those of extensions excepted), and takes the right to create objects in `public`
/// away from everyone else. Databases made before roles were split were owned by the
/// superuser; this hands them over. Cheap and idempotent.
pub async fn hand_over_to_owner(conn: &mut PgConnection, owner: &str) -> Result<(), RoleError> {
    let owner = checked_name(owner)?;
    let sql = format!(
        r#"
DO $strongroom$
DECLARE
    owner_name text := '{owner}';
    owner_oid oid := '{owner}'::regrole::oid;
    r record;
BEGIN
    EXECUTE format('ALTER DATABASE %I OWNER TO %I', current_database(), owner_name);
    EXECUTE format('ALTER SCHEMA public OWNER TO %I', owner_name);
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    -- Tables first: a sequence owned by a column follows its table.
    FOR r IN
        SELECT c.oid::regclass AS name, c.relkind
        FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
          AND c.relowner <> owner_oid
          AND NOT EXISTS (
              SELECT 1 FROM pg_depend d
              WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
        ORDER BY c.relkind = 'S'
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO %I',
            CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                           WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                           ELSE 'TABLE' END,
            r.name, owner_name);
    END LOOP;
    FOR r IN
        SELECT p.oid::regprocedure AS sig
        FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
          AND p.proowner <> owner_oid
          AND NOT EXISTS (
              SELECT 1 FROM pg_depend d
              WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO %I', r.sig, owner_name);
    END LOOP;
    FOR r IN
        SELECT t.oid::regtype AS name
        FROM pg_type t
        WHERE t.typnamespace = 'public'::regnamespace
          AND t.typtype IN ('e', 'd')
          AND t.typowner <> owner_oid
          AND NOT EXISTS (
              SELECT 1 FROM pg_depend d
              WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER TYPE %s OWNER TO %I', r.name, owner_name);
    END LOOP;
END
$strongroom$
"#
    );
    sqlx::query(&sql)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(sql_err(format!("hand the database over to role {owner}")))
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677), in the
/// form `ALTER ROLE … PASSWORD` accepts as already hashed.
pub(crate) fn scram_verifier(password: &SecretString) -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use rand::RngCore;

    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salted = pbkdf2_sha256(password.expose_secret().as_bytes(), &salt, SCRAM_ITERATIONS);
    let client_key = hmac_sha256(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac_sha256(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${SCRAM_ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA256 with one output block (32 bytes), as SCRAM uses it.
fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut first = Vec::with_capacity(salt.len() + 4);
    first.extend_from_slice(salt);
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac_sha256(password, &first);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac_sha256(password, &u);
        for (o, b) in out.iter_mut().zip(u.iter()) {
            *o ^= b;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_the_rfc_7914_vector() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256, P="passwd", S="salt", c=1.
        let out = pbkdf2_sha256(b"passwd", b"salt", 1);
        assert_eq!(
            hex::encode(out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }

    #[test]
    fn verifier_has_postgres_form_and_hides_the_password() {
        let v = scram_verifier(&SecretString::from("correct horse"));
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(!v.contains("correct horse"));
        assert!(v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "$:+/=-".contains(c)));
    }

    #[test]
    fn role_names_are_plain_identifiers() {
        assert!(checked_name("strongroom_runtime").is_ok());
        assert!(checked_name("t_0123abcd_runtime").is_ok());
        for bad in ["", "Runtime", "a-b", "x'; DROP", "1abc", &"a".repeat(64)] {
            assert!(checked_name(bad).is_err(), "{bad}");
        }
    }
}

//! Typed configuration: defaults ← `DATA_DIR/strongroom.toml` ← environment ← command-line
//! flags. Loaded once, validated at start, then held in Rocket's managed state.
//! `Debug` never prints the database URL (it may carry a password).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rocket::figment::providers::{Env, Format, Serialized, Toml};
use rocket::figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Environment variables read as settings, each mapped to its key. `DATABASE_URL` keeps the
/// conventional name; everything else is `STRONGROOM_<KEY>`.
const ENV_KEYS: &[&str] = &[
    "data_dir",
    "address",
    "port",
    "object_store",
    "master_key_file",
    "policies",
    "log_format",
    "log_level",
    "public_url",
    "pg_bin_dir",
    "session_idle_minutes",
    "session_absolute_hours",
    "login_max_failures",
    "login_address_max_failures",
    "login_failure_window_seconds",
    "lockout_seconds",
    "hash_concurrency",
    "hash_wait_ms",
    "max_upload_bytes",
    "gc_grace_minutes",
    "audit_signing_key_file",
    "checkpoint_interval_seconds",
    "expire_interval_seconds",
    "session_purge_interval_seconds",
    "gc_interval_seconds",
    "node_name",
    "viewer_cache_mib",
    "viewer_cache_idle_seconds",
    "scrub_interval_hours",
    "scrub_rate_mib_per_sec",
    "default_locale",
    "time_zone",
    "totp_required_roles",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the vault keeps its private PostgreSQL cluster, object store and keys.
    pub data_dir: PathBuf,
    pub address: IpAddr,
    pub port: u16,
    /// `postgres://…`; unset means the embedded private cluster under `data_dir/pg`.
    #[serde(default, skip_serializing)]
    pub database_url: Option<SecretString>,
    /// `postgres://…` of the role that owns the tables and runs migrations, when
    /// `database_url` names the runtime role the server connects as. Unset: migrations run
    /// as `database_url` (or as the runtime role's owner `migrate` set up).
    #[serde(default, skip_serializing)]
    pub database_owner_url: Option<SecretString>,
    /// `file:///path` or `s3://bucket/prefix`; unset means `data_dir/objects`.
    #[serde(default)]
    pub object_store: Option<String>,
    /// Key-encryption key file; unset means `data_dir/master.key`, generated with mode 0600.
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
    pub policies: PathBuf,
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info` or `strongroom=debug,info`.
    pub log_level: String,
    /// The URL users reach the vault at. When it is `https://…` (TLS terminated by a proxy in
    /// front of the vault), session cookies carry the `Secure` attribute.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Directory of the PostgreSQL server binaries for the embedded cluster; unset means search.
    #[serde(default)]
    pub pg_bin_dir: Option<PathBuf>,
    pub session_idle_minutes: u32,
    pub session_absolute_hours: u32,
    /// Failed logins for one account within the window before it is locked.
    pub login_max_failures: u32,
    /// Failed logins from one client address within the window before it is locked.
    pub login_address_max_failures: u32,
    pub login_failure_window_seconds: u32,
    pub lockout_seconds: u32,
    /// Password hashes (argon2id, 19 MiB each) computed at once; 0 means two per core,
    /// between 2 and 16. Bounds the memory sign-ins can take.
    #[serde(default)]
    pub hash_concurrency: u32,
    /// How long a sign-in waits for a hashing slot before it is answered 503 with
    /// `Retry-After`.
    #[serde(default = "default_hash_wait_ms")]
    pub hash_wait_ms: u32,
    /// Largest file accepted by an upload, in bytes (default 4 GiB).
    pub max_upload_bytes: u64,
    /// An object that no file row references is removed after this long.
    pub gc_grace_minutes: u32,
    /// The Ed25519 key that signs audit checkpoints; unset means `audit-signing.key` beside
    /// the master key file, generated with mode 0600. Every node uses the same file.
    #[serde(default)]
    pub audit_signing_key_file: Option<PathBuf>,
    /// How often the head of the audit chain is signed into a checkpoint (when it moved).
    pub checkpoint_interval_seconds: u32,
    /// How often requests and grants whose time has come are expired.
    pub expire_interval_seconds: u32,
    /// How often dead sessions are removed.
    pub session_purge_interval_seconds: u32,
    /// How often unreferenced objects are collected.
    pub gc_interval_seconds: u32,
    /// This node's name in the job schedule (`job_schedule.last_node`); unset means
    /// `<host name>:<process id>`.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Memory for the viewer's cache of decrypted files and rendered pages, in MiB
    /// (0 turns it off).
    #[serde(default = "default_viewer_cache_mib")]
    pub viewer_cache_mib: u32,
    /// A viewer cache entry unused for this long is dropped (it never outlives its grant).
    #[serde(default = "default_viewer_cache_idle_seconds")]
    pub viewer_cache_idle_seconds: u32,
    /// How often the background integrity scrub runs, in hours; 0 disables it.
    #[serde(default = "default_scrub_interval_hours")]
    pub scrub_interval_hours: u32,
    /// The scrub's read rate in MiB of content per second; 0: unlimited.
    #[serde(default = "default_scrub_rate_mib_per_sec")]
    pub scrub_rate_mib_per_sec: u32,
    /// The interface language when neither the person nor the browser says (`zh-CN`, `en`).
    #[serde(default = "default_locale")]
    pub default_locale: String,
    /// The time zone times are shown in for people who have not chosen one (IANA name).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Roles whose accounts must set up two-factor sign-in (TOTP) before anything else,
    /// comma-separated; empty: nobody is forced (anyone may still enrol).
    #[serde(default = "default_totp_required_roles")]
    pub totp_required_roles: String,
}

fn default_totp_required_roles() -> String {
    "supervisor,auditor,admin".into()
}

fn default_locale() -> String {
    "zh-CN".into()
}

fn default_time_zone() -> String {
    "Asia/Shanghai".into()
}

fn default_hash_wait_ms() -> u32 {
    2000
}

fn default_viewer_cache_mib() -> u32 {
    256
}

fn default_viewer_cache_idle_seconds() -> u32 {
    300
}

fn default_scrub_interval_hours() -> u32 {
    24
}

fn default_scrub_rate_mib_per_sec() -> u32 {
    20
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./strongroom-data"),
            address: IpAddr::from([127, 0, 0, 1]),
            port: 8000,
            database_url: None,
            database_owner_url: None,
            object_store: None,
            master_key_file: None,
            policies: PathBuf::from("policies"),
            log_format: LogFormat::Human,
            log_level: "info".into(),
            public_url: None,
            pg_bin_dir: None,
            session_idle_minutes: 30,
            session_absolute_hours: 12,
            login_max_failures: 5,
            login_address_max_failures: 50,
            login_failure_window_seconds: 900,
            lockout_seconds: 900,
            hash_concurrency: 0,
            hash_wait_ms: default_hash_wait_ms(),
            max_upload_bytes: 4 * 1024 * 1024 * 1024,
            gc_grace_minutes: 60,
            audit_signing_key_file: None,
            checkpoint_interval_seconds: 60,
            expire_interval_seconds: 60,
            session_purge_interval_seconds: 600,
            gc_interval_seconds: 900,
            node_name: None,
            viewer_cache_mib: default_viewer_cache_mib(),
            viewer_cache_idle_seconds: default_viewer_cache_idle_seconds(),
            scrub_interval_hours: default_scrub_interval_hours(),
            scrub_rate_mib_per_sec: default_scrub_rate_mib_per_sec(),
            default_locale: default_locale(),
            time_zone: default_time_zone(),
            totp_required_roles: default_totp_required_roles(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("address", &self.address)
            .field("port", &self.port)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "database_owner_url",
                &self.database_owner_url.as_ref().map(|_| "[redacted]"),
            )
            .field("object_store", &self.object_store)
            .field("master_key_file", &self.master_key_file)
            .field("policies", &self.policies)
            .field("log_format", &self.log_format)
            .field("log_level", &self.log_level)
            .field("public_url", &self.public_url)
            .field("session_idle_minutes", &self.session_idle_minutes)
            .field("session_absolute_hours", &self.session_absolute_hours)
            .finish_non_exhaustive()
    }
}

/// Settings given on the command line; they win over everything else.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<rocket::figment::Error>),
    #[error("configuration: setting `{setting}` {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
}

impl Config {
    /// The language of people and browsers that name none the vault writes.
    pub fn default_lang(&self) -> crate::i18n::Lang {
        crate::i18n::Lang::parse(&self.default_locale).unwrap_or(crate::i18n::Lang::ZhCn)
    }

    /// The vault's time zone.
    pub fn default_tz(&self) -> chrono_tz::Tz {
        crate::i18n::parse_time_zone(&self.time_zone).unwrap_or(chrono_tz::Tz::Asia__Shanghai)
    }

    /// Loads the configuration from the process environment and the given flags.
    pub fn load(flags: &Overrides) -> Result<Config, ConfigError> {
        Self::load_with(
            flags,
            Env::var("DATABASE_URL"),
            Env::var("DATABASE_OWNER_URL"),
        )
    }

    #[cfg(test)]
    fn load_from(flags: &Overrides, database_url: Option<String>) -> Result<Config, ConfigError> {
        Self::load_with(flags, database_url, None)
    }

    fn load_with(
        flags: &Overrides,
        database_url: Option<String>,
        database_owner_url: Option<String>,
    ) -> Result<Config, ConfigError> {
        // The data dir decides where strongroom.toml lives, so resolve it first.
        let data_dir: PathBuf = flags
            .data_dir
            .clone()
            .or_else(|| Env::var("STRONGROOM_DATA_DIR").map(PathBuf::from))
            .unwrap_or_else(|| Config::default().data_dir);
        let mut figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(data_dir.join("strongroom.toml")))
            .merge(Env::prefixed("STRONGROOM_").only(ENV_KEYS));
        if let Some(url) = database_url.filter(|u| !u.trim().is_empty()) {
            figment = figment.merge(("database_url", url));
        }
        if let Some(url) = database_owner_url.filter(|u| !u.trim().is_empty()) {
            figment = figment.merge(("database_owner_url", url));
        }
        let figment = figment.merge(Serialized::defaults(flags));
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        fn positive(setting: &'static str, v: u32) -> Result<(), ConfigError> {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    setting,
                    reason: "must be greater than 0".into(),
                });
            }
            Ok(())
        }
        positive("session_idle_minutes", self.session_idle_minutes)?;
        positive("session_absolute_hours", self.session_absolute_hours)?;
        positive("login_max_failures", self.login_max_failures)?;
        positive(
            "login_address_max_failures",
            self.login_address_max_failures,
        )?;
        positive(
            "login_failure_window_seconds",
            self.login_failure_window_seconds,
        )?;
        positive("lockout_seconds", self.lockout_seconds)?;
        positive("gc_grace_minutes", self.gc_grace_minutes)?;
        positive(
            "checkpoint_interval_seconds",
            self.checkpoint_interval_seconds,
        )?;
        positive("expire_interval_seconds", self.expire_interval_seconds)?;
        positive(
            "session_purge_interval_seconds",
            self.session_purge_interval_seconds,
        )?;
        positive("gc_interval_seconds", self.gc_interval_seconds)?;
        if let Some(name) = &self.node_name {
            if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                return Err(ConfigError::Invalid {
                    setting: "node_name",
                    reason: "must be 1 to 128 printable characters".into(),
                });
            }
        }
        positive("viewer_cache_idle_seconds", self.viewer_cache_idle_seconds)?;
        if crate::i18n::Lang::parse(&self.default_locale).is_none() {
            return Err(ConfigError::Invalid {
                setting: "default_locale",
                reason: "must be zh-CN or en".into(),
            });
        }
        if crate::i18n::parse_time_zone(&self.time_zone).is_none() {
            return Err(ConfigError::Invalid {
                setting: "time_zone",
                reason: "must be an IANA time zone name such as Asia/Shanghai".into(),
            });
        }
        for role in self
            .totp_required_roles
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            if role.parse::<crate::users::Role>().is_err() {
                return Err(ConfigError::Invalid {
                    setting: "totp_required_roles",
                    reason: format!(
                        "names an unknown role `{role}` (expected archivist, employee, supervisor, auditor or admin, comma-separated)"
                    ),
                });
            }
        }
        if self.max_upload_bytes == 0 {
            return Err(ConfigError::Invalid {
                setting: "max_upload_bytes",
                reason: "must be greater than 0".into(),
            });
        }
        if u64::from(self.session_idle_minutes) > u64::from(self.session_absolute_hours) * 60 {
            return Err(ConfigError::Invalid {
                setting: "session_idle_minutes",
                reason: "must not exceed session_absolute_hours".into(),
            });
        }
        for (setting, url) in [
            ("database_url", &self.database_url),
            ("database_owner_url", &self.database_owner_url),
        ] {
            if let Some(url) = url {
                let url = url.expose_secret();
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(ConfigError::Invalid {
                        setting,
                        reason: "must start with postgres:// or postgresql://".into(),
                    });
                }
            }
        }
        if self.database_owner_url.is_some() && self.database_url.is_none() {
            return Err(ConfigError::Invalid {
                setting: "database_owner_url",
                reason: "needs `database_url` (the runtime role the server connects as)".into(),
            });
        }
        if let Some(store) = &self.object_store {
            if !(store.starts_with("file://") || store.starts_with("s3://")) {
                return Err(ConfigError::Invalid {
                    setting: "object_store",
                    reason: format!("must be file:///path or s3://bucket/prefix, not `{store}`"),
                });
            }
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    setting: "public_url",
                    reason: "must start with http:// or https://".into(),
                });
            }
        }
        if let Err(e) = self.log_level.parse::<tracing_subscriber::EnvFilter>() {
            return Err(ConfigError::Invalid {
                setting: "log_level",
                reason: format!("is not a valid filter: {e}"),
            });
        }
        Ok(())
    }

    /// Whether session cookies must carry `Secure`.
    pub fn secure_cookies(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The key-encryption key file: the configured one, or `master.key` in the data dir.
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    /// The audit signing key file: the configured one, or `audit-signing.key` in the
    /// master key file's directory.
    pub fn audit_signing_key_path(&self) -> PathBuf {
        self.audit_signing_key_file.clone().unwrap_or_else(|| {
            let master = self.master_key_path();
            match master.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(dir) => dir.join("audit-signing.key"),
                None => PathBuf::from("audit-signing.key"),
            }
        })
    }

    pub fn session_idle(&self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.session_idle_minutes))
    }

    pub fn session_absolute(&self) -> chrono::Duration {
        chrono::Duration::hours(i64::from(self.session_absolute_hours))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_and_bad_values_name_the_setting() {
        let dir = std::env::temp_dir().join(format!("sr-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("strongroom.toml"),
            "port = 9001\nlog_format = \"json\"\n",
        )
        .unwrap();
        let flags = Overrides {
            data_dir: Some(dir.clone()),
            ..Default::default()
        };
        let c = Config::load_from(&flags, None).unwrap();
        assert_eq!(c.port, 9001);
        assert_eq!(c.log_format, LogFormat::Json);
        let flags = Overrides {
            data_dir: Some(dir.clone()),
            port: Some(9002),
            ..Default::default()
        };
        assert_eq!(Config::load_from(&flags, None).unwrap().port, 9002);

        std::fs::write(dir.join("strongroom.toml"), "port = \"many\"\n").unwrap();
        let err = Config::load_from(&flags_dir(&dir), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("port"), "{err}");

        std::fs::write(dir.join("strongroom.toml"), "prot = 1\n").unwrap();
        let err = Config::load_from(&flags_dir(&dir), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("prot"), "{err}");

        std::fs::write(dir.join("strongroom.toml"), "session_idle_minutes = 0\n").unwrap();
        let err = Config::load_from(&flags_dir(&dir), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("session_idle_minutes"), "{err}");

        std::fs::remove_file(dir.join("strongroom.toml")).unwrap();
        let err = Config::load_from(&flags_dir(&dir), Some("mysql://x".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("database_url"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn totp_required_roles_default_empty_and_unknown() {
        assert_eq!(
            Config::default().totp_required_roles,
            "supervisor,auditor,admin"
        );
        let dir = std::env::temp_dir().join(format!("sr-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("strongroom.toml"), "totp_required_roles = \"\"\n").unwrap();
        let c = Config::load_from(&flags_dir(&dir), None).unwrap();
        assert!(crate::auth::second_factor::required_roles(&c).is_empty());
        std::fs::write(
            dir.join("strongroom.toml"),
            "totp_required_roles = \"admin, supervisor\"\n",
        )
        .unwrap();
        let c = Config::load_from(&flags_dir(&dir), None).unwrap();
        assert_eq!(
            crate::auth::second_factor::required_roles(&c),
            vec![crate::users::Role::Admin, crate::users::Role::Supervisor]
        );
        std::fs::write(
            dir.join("strongroom.toml"),
            "totp_required_roles = \"admin,janitor\"\n",
        )
        .unwrap();
        let err = Config::load_from(&flags_dir(&dir), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("totp_required_roles") && err.contains("janitor"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn flags_dir(dir: &Path) -> Overrides {
        Overrides {
            data_dir: Some(dir.to_path_buf()),
            ..Default::default()
        }
    }

    #[test]
    fn debug_hides_the_database_url() {
        let c = Config {
            database_url: Some(SecretString::from("postgres://u:hunter2@db/x")),
            database_owner_url: Some(SecretString::from("postgres://o:swordfish@db/x")),
            ..Default::default()
        };
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("swordfish"), "{debug}");
    }
}

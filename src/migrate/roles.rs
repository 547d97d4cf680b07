//! The roles a source's schema uses — as owner, grantee, in a policy or in default
//! privileges — so that the target serves the same roles after cutover. A role the
//! target lacks would make the schema copy fail half-way, or leave the application
//! locked out after the switch; precheck names it with the statement that creates
//! it. belt never copies a password.

use tokio_postgres::Client;

use crate::pg::DbError;

/// A role the source's schema refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedRole {
    pub name: String,
    /// The name as SQL writes it (quoted only when it must be).
    pub sql_name: String,
    pub login: bool,
    /// Whether it owns an object (the schema copy then sets it as owner).
    pub owns: bool,
    /// What refers to it: `owner of table public.t`, `grantee on schema sales`, …
    pub uses: Vec<String>,
}

impl UsedRole {
    /// The statement that creates the role without copying its password.
    pub fn create_statement(&self) -> String {
        let name = &self.sql_name;
        if self.login {
            format!("CREATE ROLE {name} LOGIN; then give it its password with ALTER ROLE {name} PASSWORD … (belt never copies one)")
        } else {
            format!("CREATE ROLE {name} NOLOGIN;")
        }
    }

    /// The first few uses, for a message.
    pub fn describe_uses(&self) -> String {
        let shown: Vec<&str> = self.uses.iter().take(6).map(String::as_str).collect();
        let more = self.uses.len().saturating_sub(shown.len());
        if more > 0 {
            format!("{} and {more} more", shown.join(", "))
        } else {
            shown.join(", ")
        }
    }
}

/// Objects pg_dump carries, with their owner and ACL (`what` names the object).
const OBJECTS: &str = "
with user_ns as (
    select oid, nspname, nspowner, nspacl from pg_namespace
     where nspname not in ('pg_catalog', 'information_schema', 'belt') and nspname not like 'pg\\_%'
), objs(owner, acl, what) as (
    select c.relowner, c.relacl,
           case c.relkind when 'S' then 'sequence ' when 'v' then 'view ' when 'm' then 'materialized view '
                          when 'f' then 'foreign table ' else 'table ' end || c.oid::regclass::text
      from pg_class c join user_ns n on n.oid = c.relnamespace
     where c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
       and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass
                        and d.objid = c.oid and d.deptype = 'e')
    union all
    select nspowner, nspacl, 'schema ' || quote_ident(nspname) from user_ns
    union all
    select p.proowner, p.proacl, 'function ' || p.oid::regprocedure::text
      from pg_proc p join user_ns n on n.oid = p.pronamespace
     where not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass
                        and d.objid = p.oid and d.deptype = 'e')
    union all
    select t.typowner, t.typacl, 'type ' || t.oid::regtype::text
      from pg_type t join user_ns n on n.oid = t.typnamespace
     where (t.typtype in ('e', 'd', 'r', 'm')
            or (t.typtype = 'c' and (select relkind from pg_class where oid = t.typrelid) = 'c'))
       and not exists (select 1 from pg_depend d where d.classid = 'pg_type'::regclass
                        and d.objid = t.oid and d.deptype = 'e')
    union all
    select null, a.attacl, 'column ' || a.attrelid::regclass::text || '.' || quote_ident(a.attname)
      from pg_attribute a join pg_class c on c.oid = a.attrelid join user_ns n on n.oid = c.relnamespace
     where a.attacl is not null and not a.attisdropped
), uses(role, what, owns) as (
    select owner, 'owner of ' || what, true from objs where owner is not null
    union all
    select (aclexplode(acl)).grantee, 'grantee on ' || what, false from objs where acl is not null
    union all
    select r, 'policy ' || quote_ident(p.polname) || ' on ' || p.polrelid::regclass::text, false
      from pg_policy p, unnest(p.polroles) r
    union all
    select defaclrole, 'default privileges of ' || defaclrole::regrole::text, true from pg_default_acl
    union all
    select (aclexplode(defaclacl)).grantee, 'default privileges of ' || defaclrole::regrole::text, false
      from pg_default_acl
)
select r.rolname::text, r.rolcanlogin, bool_or(u.owns), array_agg(distinct u.what), quote_ident(r.rolname)
  from uses u join pg_roles r on r.oid = u.role
 group by 1, 2, 5 order by 1";

/// Every role the schema of `c`'s database refers to (PUBLIC left out).
pub async fn used_roles(c: &Client, db: &str) -> Result<Vec<UsedRole>, DbError> {
    let rows = c
        .query(OBJECTS, &[])
        .await
        .map_err(|e| DbError::query(db, "list the roles the schema uses", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let mut uses: Vec<String> = r.get(3);
            uses.sort();
            UsedRole {
                name: r.get(0),
                sql_name: r.get(4),
                login: r.get(1),
                owns: r.get(2),
                uses,
            }
        })
        .collect())
}

/// The roles of `roles` that do not exist on `c`'s server.
pub async fn missing<'a>(c: &Client, db: &str, roles: &'a [UsedRole]) -> Result<Vec<&'a UsedRole>, DbError> {
    let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
    let present: Vec<String> = c
        .query(
            "select rolname::text from pg_roles where rolname = any($1)",
            &[&names],
        )
        .await
        .map_err(|e| DbError::query(db, "look up roles", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(roles.iter().filter(|r| !present.contains(&r.name)).collect())
}

/// The roles of `owners` that belt's role on `c` cannot create objects for (it must
/// be a member to `ALTER … OWNER TO` them), as SQL names. Built-in `pg_*` roles
/// (`pg_database_owner` owns schema public) are left out: nobody is granted them.
pub async fn not_member_of(c: &Client, db: &str, owners: &[&str]) -> Result<Vec<String>, DbError> {
    Ok(c.query(
        "select quote_ident(rolname) from pg_roles where rolname = any($1) \
         and rolname not like 'pg\\_%' and not pg_has_role(current_user, oid, 'MEMBER') order by 1",
        &[&owners],
    )
    .await
    .map_err(|e| DbError::query(db, "check role memberships", e))?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

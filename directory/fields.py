"""The directory's fields: what mappings, expressions and scoping filters may read."""

#: Directory fields a mapping may read. ``manager`` is a reference: it resolves to the
#: manager's account id in the same app.
DIRECTORY_FIELDS = (
    "user_id",
    "user_name",
    "email",
    "given_name",
    "family_name",
    "display_name",
    "department",
    "title",
    "employee_number",
    "manager",
    "active",
)

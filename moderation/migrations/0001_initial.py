from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from moderation.models import AppealStatus, FlagCategory, SanctionKind
from tortoise.fields.base import OnDelete
from tortoise import fields
from moderation import triggers


async def install_triggers(apps, schema_editor):
    await triggers.install(schema_editor.client)


async def remove_triggers(apps, schema_editor):
    await triggers.remove(schema_editor.client)

class Migration(migrations.Migration):
    dependencies = [('core', '0001_initial')]

    initial = True

    operations = [
        ops.CreateModel(
            name='Flag',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('course_id', fields.IntField(db_index=True)),
                ('post_id', fields.IntField(db_index=True)),
                ('flagger', fields.ForeignKeyField('core.User', source_field='flagger_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('category', fields.CharEnumField(description='SPAM: spam\nHARASSMENT: harassment\nOFF_TOPIC: off_topic\nPLAGIARISM: plagiarism\nOTHER: other', enum_type=FlagCategory, max_length=16)),
                ('text', fields.TextField(default='', unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('resolved_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('resolution_seq', fields.BigIntField(null=True)),
                ('outcome', fields.TextField(default='', unique=False)),
            ],
            options={'table': 'agora_flag', 'app': 'moderation', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='LogEntry',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('seq', fields.BigIntField(unique=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('course_id', fields.IntField(null=True, db_index=True)),
                ('actor_id', fields.IntField(null=True)),
                ('actor_role', fields.CharField(max_length=16)),
                ('act', fields.CharField(max_length=32)),
                ('target_type', fields.CharField(max_length=16)),
                ('target_id', fields.BigIntField()),
                ('rule_code', fields.CharField(default='', max_length=16)),
                ('reason', fields.TextField(default='', unique=False)),
                ('duration_seconds', fields.BigIntField(null=True)),
                ('old_value', fields.TextField(default='', unique=False)),
                ('new_value', fields.TextField(default='', unique=False)),
                ('reverses_seq', fields.BigIntField(null=True)),
                ('source', fields.CharField(default='manual', max_length=16)),
                ('canonical', fields.TextField(unique=False)),
                ('leaf_hash', fields.CharField(max_length=64)),
            ],
            options={'table': 'agora_log_entry', 'app': 'moderation', 'pk_attr': 'id', 'table_description': 'One moderation act. Append-only: the database refuses UPDATE and DELETE on this table.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='LogState',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('size', fields.BigIntField(default=0)),
                ('range_hex', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'agora_log_state', 'app': 'moderation', 'pk_attr': 'id', 'table_description': 'The one row that appends lock and extend: size and the compact range of the tree.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Notice',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('core.User', source_field='user_id', db_constraint=True, to_field='id', related_name='notices', on_delete=OnDelete.CASCADE)),
                ('course_id', fields.IntField(null=True)),
                ('entry_seq', fields.BigIntField(db_index=True)),
                ('act', fields.CharField(max_length=32)),
                ('summary', fields.TextField(unique=False)),
                ('content_excerpt', fields.TextField(default='', unique=False)),
                ('rule_code', fields.CharField(default='', max_length=16)),
                ('rule_text', fields.TextField(default='', unique=False)),
                ('reason', fields.TextField(default='', unique=False)),
                ('automatic', fields.BooleanField(default=False)),
                ('ends_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('appeal_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'agora_notice', 'app': 'moderation', 'pk_attr': 'id', 'table_description': 'What the affected person is told about an act: durable, shown on their standing page.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Appeal',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('notice', fields.ForeignKeyField('moderation.Notice', source_field='notice_id', db_constraint=True, to_field='id', related_name='appeals', on_delete=OnDelete.CASCADE)),
                ('entry_seq', fields.BigIntField(unique=True)),
                ('appellant', fields.ForeignKeyField('core.User', source_field='appellant_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('course_id', fields.IntField(null=True, db_index=True)),
                ('text', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('status', fields.CharEnumField(default=AppealStatus.PENDING, description='PENDING: pending\nUPHELD: upheld\nOVERTURNED: overturned', enum_type=AppealStatus, max_length=16)),
                ('decided_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('decided_by_id', fields.IntField(null=True)),
                ('decision_text', fields.TextField(default='', unique=False)),
                ('decision_seq', fields.BigIntField(null=True)),
            ],
            options={'table': 'agora_appeal', 'app': 'moderation', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Rule',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('course', fields.ForeignKeyField('core.Course', source_field='course_id', db_constraint=True, to_field='id', related_name='rules', on_delete=OnDelete.CASCADE)),
                ('code', fields.CharField(max_length=16)),
                ('text', fields.TextField(unique=False)),
                ('position', fields.IntField(default=0)),
                ('retired', fields.BooleanField(default=False)),
            ],
            options={'table': 'agora_rule', 'app': 'moderation', 'unique_together': (('course', 'code'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Sanction',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('course', fields.ForeignKeyField('core.Course', source_field='course_id', db_constraint=True, to_field='id', related_name='sanctions', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('core.User', source_field='user_id', db_constraint=True, to_field='id', related_name='sanctions', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='WARNING: warning\nSILENCE: silence\nSUSPENSION: suspension', enum_type=SanctionKind, max_length=16)),
                ('starts_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ends_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('lifted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('entry_seq', fields.BigIntField()),
            ],
            options={'table': 'agora_sanction', 'app': 'moderation', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='TreeHead',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('size', fields.BigIntField(unique=True)),
                ('root_hex', fields.CharField(max_length=64)),
                ('signed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('signature_hex', fields.CharField(max_length=128)),
                ('key_id', fields.CharField(max_length=64)),
            ],
            options={'table': 'agora_tree_head', 'app': 'moderation', 'pk_attr': 'id', 'table_description': 'A signed statement "after `size` entries the tree\'s root was `root_hex`". Append-only.'},
            bases=['Model'],
        ),
        ops.RunPython(install_triggers, remove_triggers),
    ]

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from core.models import ExportStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('core', '0001_initial'), ('core', '0002_course_public_moderator_names')]

    initial = False

    operations = [
        ops.CreateModel(
            name='DataExport',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('core.User', source_field='user_id', db_constraint=True, to_field='id', related_name='exports', on_delete=OnDelete.CASCADE)),
                ('status', fields.CharEnumField(default=ExportStatus.QUEUED, description='QUEUED: queued\nRUNNING: running\nREADY: ready\nFAILED: failed', enum_type=ExportStatus, max_length=16)),
                ('progress', fields.IntField(default=0)),
                ('stage', fields.CharField(default='', max_length=120)),
                ('file_name', fields.CharField(default='', max_length=200)),
                ('size_bytes', fields.BigIntField(default=0)),
                ('error', fields.TextField(default='', unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'agora_data_export', 'app': 'core', 'pk_attr': 'id', 'table_description': "A learner's request for a copy of their data, built by a background job into a ZIP."},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Course',
            name='allow_removal_on_deletion',
            field=fields.BooleanField(default=True),
        ),
        ops.AddField(
            model_name='Notification',
            name='emailed_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='User',
            name='about',
            field=fields.TextField(default='', unique=False),
        ),
        ops.AddField(
            model_name='User',
            name='deleted_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='User',
            name='email_prefs',
            field=fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='User',
            name='last_digest_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='User',
            name='links',
            field=fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='User',
            name='profile_public',
            field=fields.BooleanField(default=False),
        ),
    ]

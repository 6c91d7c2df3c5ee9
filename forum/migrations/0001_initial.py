from tortoise import migrations
from tortoise.migrations import operations as ops
from forum.models import ThreadKind
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('core', '0001_initial')]

    initial = True

    operations = [
        ops.CreateModel(
            name='Forum',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('course', fields.ForeignKeyField('core.Course', source_field='course_id', db_constraint=True, to_field='id', related_name='forums', on_delete=OnDelete.CASCADE)),
                ('title', fields.CharField(max_length=120)),
                ('description', fields.TextField(default='', unique=False)),
                ('position', fields.IntField(default=0)),
                ('allow_anonymous', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'agora_forum', 'app': 'forum', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Thread',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('forum', fields.ForeignKeyField('forum.Forum', source_field='forum_id', db_constraint=True, to_field='id', related_name='threads', on_delete=OnDelete.CASCADE)),
                ('course', fields.ForeignKeyField('core.Course', source_field='course_id', db_constraint=True, to_field='id', related_name='threads', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(default=ThreadKind.DISCUSSION, description='DISCUSSION: discussion\nQUESTION: question', enum_type=ThreadKind, max_length=16)),
                ('title', fields.CharField(max_length=200)),
                ('author', fields.ForeignKeyField('core.User', source_field='author_id', null=True, db_constraint=True, to_field='id', related_name='threads', on_delete=OnDelete.SET_NULL)),
                ('is_anonymous', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('last_activity_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('reply_count', fields.IntField(default=0)),
                ('is_locked', fields.BooleanField(default=False)),
                ('is_pinned', fields.BooleanField(default=False)),
                ('accepted_post_id', fields.IntField(null=True)),
            ],
            options={'table': 'agora_thread', 'app': 'forum', 'indexes': [Index(fields=['forum_id', 'is_pinned', 'last_activity_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Post',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('thread', fields.ForeignKeyField('forum.Thread', source_field='thread_id', db_constraint=True, to_field='id', related_name='posts', on_delete=OnDelete.CASCADE)),
                ('parent', fields.ForeignKeyField('forum.Post', source_field='parent_id', null=True, db_constraint=True, to_field='id', related_name='replies', on_delete=OnDelete.CASCADE)),
                ('is_opening', fields.BooleanField(default=False)),
                ('author', fields.ForeignKeyField('core.User', source_field='author_id', null=True, db_constraint=True, to_field='id', related_name='posts', on_delete=OnDelete.SET_NULL)),
                ('is_anonymous', fields.BooleanField(default=False)),
                ('body_markdown', fields.TextField(unique=False)),
                ('body_html', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True)),
                ('edited_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revision_count', fields.IntField(default=0)),
                ('deleted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('is_endorsed', fields.BooleanField(default=False)),
                ('vote_count', fields.IntField(default=0)),
            ],
            options={'table': 'agora_post', 'app': 'forum', 'indexes': [Index(fields=['thread_id', 'parent_id', 'id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Revision',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('post', fields.ForeignKeyField('forum.Post', source_field='post_id', db_constraint=True, to_field='id', related_name='revisions', on_delete=OnDelete.CASCADE)),
                ('editor', fields.ForeignKeyField('core.User', source_field='editor_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('edited_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('previous_markdown', fields.TextField(unique=False)),
                ('previous_title', fields.CharField(null=True, max_length=200)),
                ('by_staff', fields.BooleanField(default=False)),
            ],
            options={'table': 'agora_revision', 'app': 'forum', 'pk_attr': 'id', 'table_description': 'The body a post had before one edit: who changed it, when, and the full previous text.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Subscription',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('thread', fields.ForeignKeyField('forum.Thread', source_field='thread_id', db_constraint=True, to_field='id', related_name='subscriptions', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('core.User', source_field='user_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'agora_subscription', 'app': 'forum', 'unique_together': (('thread', 'user'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ThreadVisit',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('thread', fields.ForeignKeyField('forum.Thread', source_field='thread_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('core.User', source_field='user_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('last_seen_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'agora_thread_visit', 'app': 'forum', 'unique_together': (('thread', 'user'),), 'pk_attr': 'id', 'table_description': 'When a user last read a thread, for "new since your last visit" markers.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Vote',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('post', fields.ForeignKeyField('forum.Post', source_field='post_id', db_constraint=True, to_field='id', related_name='votes', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('core.User', source_field='user_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'agora_vote', 'app': 'forum', 'unique_together': (('post', 'user'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]

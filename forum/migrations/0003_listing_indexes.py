from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('core', '0004_notification_indexes'), ('forum', '0002_post_state')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Forum',
            index=Index(fields=['course_id', 'position']),
        ),
        ops.AddIndex(
            model_name='Post',
            index=Index(fields=['author_id', 'created_at']),
        ),
        ops.AddIndex(
            model_name='Thread',
            index=Index(fields=['course_id', 'is_pinned', 'last_activity_at']),
        ),
    ]
